// Elastic Beanstalk's build step (see Buildfile): after the platform's production `npm install`, check
// that the bundle holds the compiled server and that its runtime dependencies load, so a broken bundle
// fails the deploy here rather than crash-looping behind the load balancer.
import { access } from 'node:fs/promises';

try {
  await access('dist/server.js');
} catch {
  console.error('cubecache: dist/server.js is missing. Deploy the bundle that `npm run bundle` builds (it holds the compiled server), not the bare source.');
  process.exit(1);
}
await import('@aws-sdk/client-s3');
await import('@aws-sdk/lib-storage');
await import('../dist/lib/app.js');
console.log('cubecache: bundle verified (dist/ and production dependencies load)');
