import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { S3Client } from '@aws-sdk/client-s3';
import { S3Store } from '../lib/store-s3.js';
import { openS3Store, s3Bucket } from './support/app.js';
import { storeContract } from './store-contract.js';

storeContract('S3Store', () => openS3Store(), async () => {
  const { server } = await s3Bucket();
  // s3rver, the fallback fake, ignores If-None-Match and answers InternalError to a continued listing.
  return { conditionalWrites: server.conditionalWrites, listPaging: server.kind === 'ceph' };
});

test('S3Store: wrong credentials are an error, not a missing object', async (t) => {
  const { server, bucket } = await s3Bucket();
  if (server.kind !== 'ceph') {
    t.skip('s3rver does not check signatures (not checked here)');
    return;
  }
  const client = new S3Client({
    endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: 'wrong-secret' },
  });
  await assert.rejects(new S3Store(client, bucket).get('anything'), (err: Error) => err.name !== 'NoSuchKey');
});

test('S3Store: an unreachable endpoint is an error, not a missing object', async () => {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as { port: number }).port;
  probe.close();
  const client = new S3Client({
    endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
  });
  await assert.rejects(new S3Store(client, 'bucket').get('anything'), /ECONNREFUSED/);
});
