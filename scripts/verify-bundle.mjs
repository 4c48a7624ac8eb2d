// Elastic Beanstalk's build step (see Buildfile): after the platform's production `npm install`, check
// that the bundle holds the compiled server and that its runtime dependencies load, so a broken bundle
// fails the deploy here rather than crash-looping behind the load balancer.
import { access, readFile } from 'node:fs/promises';

// The platform branch decides the node, not package.json: a bundle deployed to an older branch must fail here.
const { engines } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
const minimum = Number(/>=\s*(\d+)/.exec(engines?.node ?? '')?.[1] ?? 0);
const major = Number(process.versions.node.split('.')[0]);
if (major < minimum) {
  console.error(`cubecache: this platform runs Node.js ${process.version}, the bundle needs ${engines.node} (package.json engines). Choose the Node.js 24 platform branch.`);
  process.exit(1);
}

try {
  await access('dist/server.js');
} catch {
  console.error('cubecache: dist/server.js is missing. Deploy the bundle that `npm run bundle` builds (it holds the compiled server), not the bare source.');
  process.exit(1);
}
await import('@aws-sdk/client-s3');
await import('@aws-sdk/lib-storage');
await import('../dist/lib/app.js');
console.log(`cubecache: bundle verified on Node.js ${process.version} (dist/ and production dependencies load)`);
