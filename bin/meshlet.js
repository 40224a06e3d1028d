#!/usr/bin/env node
'use strict';
// Thin launcher: the compiled composition root lives in dist/ (built by `npm ci` through `prepare`).
require('../dist/proxy/main.js').main(process.argv.slice(2));
