// `npm run bundle`: builds the server and writes cubecache.zip, the source bundle Elastic Beanstalk deploys:
// the compiled server, the manifests npm installs from, the Procfile and Buildfile, and the platform
// configuration. Nothing else: no sources, tests or devDependencies. The zip is written here (a few dozen
// lines) rather than with a zip program, so the bundle builds the same on any machine with Node.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';

const OUT = process.argv[2] ?? 'cubecache.zip';
const ROOTS = ['dist', 'package.json', 'package-lock.json', 'Procfile', 'Buildfile', 'scripts/verify-bundle.mjs', '.ebextensions', '.platform'];

// A clean build: files of modules since removed must not ride along in dist/.
rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
execFileSync(process.execPath, ['scripts/copy-console.mjs'], { stdio: 'inherit' });

/** Every file under the roots, with forward slashes, in a stable order. */
function files(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((name) => files(join(path, name)));
}

const locals = [];
const central = [];
let offset = 0;
// Source maps stay out: the Procfile's node does not read them (no --enable-source-maps), so they are dead weight.
const entries = ROOTS.flatMap(files).map((path) => path.split('\\').join('/')).filter((path) => !path.endsWith('.map'));
for (const name of entries) {
  const data = readFileSync(name);
  const packed = deflateRawSync(data, { level: 9 });
  const nameBytes = Buffer.from(name, 'utf8');
  const crc = crc32(data);
  const DOS_TIME = 0; // fixed timestamps (1980-01-01) keep the bundle reproducible
  const DOS_DATE = (0 << 9) | (1 << 5) | 1;
  // The local header and the central directory entry share one run of fields, at offsets 4 and 6.
  const writeShared = (header, at) => {
    header.writeUInt16LE(20, at); // version needed to extract
    header.writeUInt16LE(0x0800, at + 2); // names are UTF-8
    header.writeUInt16LE(8, at + 4); // deflate
    header.writeUInt16LE(DOS_TIME, at + 6);
    header.writeUInt16LE(DOS_DATE, at + 8);
    header.writeUInt32LE(crc, at + 10);
    header.writeUInt32LE(packed.length, at + 14);
    header.writeUInt32LE(data.length, at + 18);
    header.writeUInt16LE(nameBytes.length, at + 22);
  };
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  writeShared(local, 4);
  locals.push(local, nameBytes, packed);
  const entry = Buffer.alloc(46);
  entry.writeUInt32LE(0x02014b50, 0);
  entry.writeUInt16LE((3 << 8) | 20, 4); // made on Unix, so the mode below is honoured
  writeShared(entry, 6);
  // Platform hooks must be executable (older Amazon Linux 2 platforms do not add the bit themselves).
  const mode = name.startsWith('.platform/hooks/') || name.startsWith('.platform/confighooks/') ? 0o100755 : 0o100644;
  entry.writeUInt32LE((mode << 16) >>> 0, 38);
  entry.writeUInt32LE(offset, 42);
  central.push(entry, nameBytes);
  offset += local.length + nameBytes.length + packed.length;
}
const centralSize = central.reduce((n, b) => n + b.length, 0);
const end = Buffer.alloc(22);
end.writeUInt32LE(0x06054b50, 0);
end.writeUInt16LE(entries.length, 8);
end.writeUInt16LE(entries.length, 10);
end.writeUInt32LE(centralSize, 12);
end.writeUInt32LE(offset, 16);
writeFileSync(OUT, Buffer.concat([...locals, ...central, end]));
console.log(`cubecache: wrote ${OUT} (${entries.length} files, ${Math.round((offset + centralSize + 22) / 1024)} KiB)`);
