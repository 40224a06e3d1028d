#!/usr/bin/env node
'use strict';
// Thin launcher: the compiled CLI (proxy/main.ts) lives in dist/ (built by `npm ci` through `prepare`).
require('../dist/proxy/main.js').main(process.argv.slice(2));
