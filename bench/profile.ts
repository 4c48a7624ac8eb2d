/**
 * Summarises profiles written by BENCH_PROFILE=cpu|heap (node --cpu-prof / --heap-prof of the server process):
 *
 *   node --import tsx bench/profile.ts <file.cpuprofile | file.heapprofile | dir> [--top N] [--stalls MS]
 *
 * CPU: self and inclusive time per function (% of non-idle time), and with --stalls MS every stretch of
 * at least MS ms in which the process never went idle (on a server with no load: an event-loop stall), with
 * the functions that filled it. Heap: sampled allocation bytes per function (self and inclusive).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fmt, ROOT, table } from './support.js';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface CpuNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: CpuNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }
interface HeapNode { callFrame: CallFrame; selfSize: number; children: HeapNode[] }

const args = process.argv.slice(2);
const top = Number(option('--top') ?? 25);
const stallMs = option('--stalls') === undefined ? undefined : Number(option('--stalls'));
const paths = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')));
if (paths.length === 0) {
  console.error('usage: node --import tsx bench/profile.ts <file.cpuprofile|file.heapprofile|dir> [--top N] [--stalls MS]');
  process.exit(2);
}

function option(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function label(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  let where = frame.url.replace(/^file:\/\//, '');
  if (where.startsWith(ROOT)) where = relative(ROOT, where);
  where = where.replace(/^.*node_modules\//, 'node_modules/');
  return `${name} ${where}:${frame.lineNumber + 1}`;
}

function files(path: string): string[] {
  if (statSync(path).isDirectory()) return readdirSync(path).filter((f) => /\.(cpu|heap)profile$/.test(f)).map((f) => join(path, f));
  return [path];
}

for (const file of paths.flatMap(files)) {
  console.log(`\n# ${file}`);
  const data = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile | { head: HeapNode };
  if ('head' in data) heap(data.head);
  else cpu(data);
}

function cpu(profile: CpuProfile): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0)));
  const idleIds = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) { total += us; if (idleIds.has(id)) idle += us; }
  const busy = total - idle;
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (idleIds.has(id)) continue;
    const key = label(byId.get(id)!.callFrame);
    self.set(key, (self.get(key) ?? 0) + us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const k = label(byId.get(at)!.callFrame);
      if (k === '(root)' || seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  console.log(`profiled ${fmt(total / 1000, 0)} ms: busy ${fmt(busy / 1000, 0)} ms, idle ${fmt(idle / 1000, 0)} ms (main thread only: gzip on the libuv pool is not in a CPU profile)`);
  const rank = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => [k, `${fmt(us / 1000, 1)} ms`, `${fmt((us / busy) * 100, 1)}%`]);
  table(`Self time, top ${top} (% of busy time)`, ['function', 'self', '%'], rank(self));
  table(`Inclusive time, top ${top} (% of busy time)`, ['function', 'total', '%'], rank(inclusive));

  if (stallMs !== undefined) {
    // Stretches with no (idle) sample: the main thread ran without a break.
    const stretches: Array<{ from: number; to: number; ids: number[] }> = [];
    let t = profile.startTime;
    let current: { from: number; to: number; ids: number[] } | undefined;
    profile.samples.forEach((id, i) => {
      t += profile.timeDeltas[i] ?? 0;
      if (idleIds.has(id)) {
        if (current && current.to - current.from >= stallMs * 1000) stretches.push(current);
        current = undefined;
      } else {
        current ??= { from: t, to: t, ids: [] };
        current.to = t;
        current.ids.push(id);
      }
    });
    if (current && current.to - current.from >= stallMs * 1000) stretches.push(current);
    console.log(`\n${stretches.length} stretches of >= ${stallMs} ms without going idle:`);
    for (const s of stretches) {
      const count = new Map<string, number>();
      for (const id of s.ids) {
        // The innermost frame that is project code or a known library, else the innermost frame.
        let key = label(byId.get(id)!.callFrame);
        for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
          const f = byId.get(at)!.callFrame;
          if (f.url.includes('/dist/') || f.url.includes('/lib/') || f.url.includes('@aws-sdk') || f.url.includes('@smithy')) {
            key = `${label(byId.get(id)!.callFrame)}  <=  ${label(f)}`;
            break;
          }
        }
        count.set(key, (count.get(key) ?? 0) + 1);
      }
      const lines = [...count].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, n]) => `      ${fmt((n / s.ids.length) * 100, 0)}%  ${k}`);
      console.log(`  at ${fmt((s.from - profile.startTime) / 1000, 0)} ms: ${fmt((s.to - s.from) / 1000, 1)} ms\n${lines.join('\n')}`);
    }
  }
}

function heap(head: HeapNode): void {
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode, stack: string[]): number => {
    const key = label(node.callFrame);
    let sum = node.selfSize;
    self.set(key, (self.get(key) ?? 0) + node.selfSize);
    total += node.selfSize;
    for (const c of node.children) sum += walk(c, [...stack, key]);
    if (!stack.includes(key)) inclusive.set(key, (inclusive.get(key) ?? 0) + sum);
    return sum;
  };
  walk(head, []);
  const rank = (m: Map<string, number>) => [...m].filter(([k]) => k !== '(root)').sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, b]) => [k, `${fmt(b / 1024 / 1024, 2)} MiB`, `${fmt((b / total) * 100, 1)}%`]);
  console.log(`sampled allocations still live at the end: ${fmt(total / 1024 / 1024, 2)} MiB (V8 heap objects; ArrayBuffer contents are outside the heap)`);
  table(`Allocations by function (self), top ${top}`, ['function', 'bytes', '%'], rank(self));
  table(`Allocations by function (inclusive), top ${top}`, ['function', 'bytes', '%'], rank(inclusive));
}
