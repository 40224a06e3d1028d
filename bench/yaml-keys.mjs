// YAML parse time against the number of keys in one mapping (issue 18.8): meshlet's parseYaml
// (common/yaml.ts: uniqueKeys off, duplicates checked in one pass) beside the `yaml` package's
// default (uniqueKeys on, quadratic) and JSON.parse. Run after `npm run build`:
//   node bench/yaml-keys.mjs [25000 50000 100000]
// Each size is parsed once per parser (a few seconds for the quadratic one at 50k); the default
// parser is skipped above 50k keys.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { parseYaml } = require('../dist/common/yaml.js');
const YAML = require('yaml');

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const rows = [];
for (const n of sizes.length ? sizes : [25_000, 50_000, 100_000]) {
  const lines = [];
  const obj = {};
  for (let i = 0; i < n; i++) {
    lines.push(`k${i}: ${i}`);
    obj[`k${i}`] = i;
  }
  const text = `${lines.join('\n')}\n`;
  const json = JSON.stringify(obj);
  const time = (f) => {
    const t = performance.now();
    f();
    return Math.round(performance.now() - t);
  };
  const meshlet = time(() => {
    if (!parseYaml(text).ok) throw new Error('parse failed');
  });
  const dflt = n <= 50_000 ? time(() => YAML.parseDocument(text, { uniqueKeys: true }).toJS()) : undefined;
  const js = time(() => JSON.parse(json));
  rows.push({ keys: n, 'meshlet parseYaml ms': meshlet, 'yaml uniqueKeys:true ms': dflt ?? 'skipped', 'JSON.parse ms': js });
}
console.table(rows);
