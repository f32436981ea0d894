#!/usr/bin/env node
// kpx runs its TypeScript sources directly, which needs Node 24 (type stripping).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`kpx: needs Node 24 or newer (this is ${process.version}); run it through npm: npm run kpx -- <command>\n`);
  process.exit(2);
}
const { runCli, processIO } = await import('../src/cli/main.ts');
const code = await runCli(process.argv.slice(2), processIO);
// Let stdout drain before exiting (large rulesets are written in one go).
process.exitCode = code;
