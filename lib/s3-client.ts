/** The S3 client production uses: the SDK's standard configuration chain, plus timeouts that bound a stalled S3. */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export interface S3ClientTimeouts {
  /** To open a connection. */
  connectMs: number;
  /** Without a byte either way on an open connection. */
  idleMs: number;
  /** For one whole request and its answer (one part of a multipart upload, or one GET of a backup). */
  requestMs: number;
}

/** Production timeouts: a dead endpoint fails in seconds, a stalled one (no byte for 10 s) within about 30 s over the SDK's three attempts; a 64 MiB GET at 1 MB/s still fits. */
export const S3_TIMEOUTS: S3ClientTimeouts = { connectMs: 5_000, idleMs: 10_000, requestMs: 120_000 };

/**
 * An S3Client whose endpoint, region and credentials come the SDK's standard ways (AWS_ENDPOINT_URL_S3,
 * AWS_REGION, the default credential chain: the instance role on Elastic Beanstalk), with `extra` on top.
 */
export function createS3Client(options: { forcePathStyle: boolean; timeouts?: S3ClientTimeouts; extra?: S3ClientConfig }): S3Client {
  const timeouts = options.timeouts ?? S3_TIMEOUTS;
  return new S3Client({
    forcePathStyle: options.forcePathStyle,
    requestHandler: {
      connectionTimeout: timeouts.connectMs,
      socketTimeout: timeouts.idleMs,
      requestTimeout: timeouts.requestMs,
      // Without this the SDK only logs a warning when requestTimeout passes, and a stalled S3 hangs a backup forever.
      throwOnRequestTimeout: true,
    },
    // The SDK's default CRC32 of every upload part and download runs in JavaScript on the event loop (tens of
    // milliseconds per 8 MiB part, a stall for every request). Backups carry their own SHA-256, checked on
    // restore, so checksums are sent only where S3 requires them. This also suits S3-compatible servers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...options.extra,
  });
}
