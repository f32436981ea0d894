// Sends itself SIGTERM while an execa child runs, then reports whether the graceful path ran.
import { execa } from 'execa';
import { stopSignal } from '../signals.ts';

const stopped = stopSignal();
const child = execa('sleep', ['5'], { reject: false });
setTimeout(() => process.kill(process.pid, 'SIGTERM'), 100);
const signal = await stopped;
process.stdout.write(`stopping on ${signal}\n`);
child.kill();
await child;
process.exitCode = 0;
