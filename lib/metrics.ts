/** Prometheus text-format metrics, hand-written: counters and histograms by route, rendered on demand. */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Upper bounds (seconds) of the request latency histogram. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A gauge or counter computed when scraped. */
export interface Sample { name: string; help: string; type: 'gauge' | 'counter'; value: number; labels?: Record<string, string> }

/** Request counters, latency histograms and cell counters, plus whatever `extra` reports at scrape time. */
export class Metrics {
  private readonly routes = new Map<string, { statuses: Map<number, number>; buckets: Float64Array; sum: number; count: number }>();
  private readonly loopDelay: IntervalHistogram;
  cellsRead = 0;
  cellsWritten = 0;
  conflicts = 0;
  authFailures = 0;
  loginsThrottled = 0;

  constructor() {
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
  }

  /** Records one answered request. `route` must be a known path or "other", so labels stay few. */
  observe(route: string, status: number, seconds: number): void {
    let entry = this.routes.get(route);
    if (!entry) this.routes.set(route, (entry = { statuses: new Map(), buckets: new Float64Array(LATENCY_BUCKETS.length), sum: 0, count: 0 }));
    entry.statuses.set(status, (entry.statuses.get(status) ?? 0) + 1);
    // Buckets are cumulative when rendered; here each request counts once, in its own bucket.
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    if (i < LATENCY_BUCKETS.length) entry.buckets[i]!++;
    entry.sum += seconds;
    entry.count++;
  }

  /** Forgets event-loop delays so far (after boot, whose work no request waited for). */
  resetLoopDelay(): void {
    this.loopDelay.reset();
  }

  /** Stops the event-loop monitor. */
  close(): void {
    this.loopDelay.disable();
  }

  /** The exposition text: these metrics, process metrics, then `extra`. */
  render(extra: Sample[]): string {
    const out: string[] = [];
    const head = (name: string, help: string, type: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    head('cubecache_http_requests_total', 'HTTP requests answered, by route and status.', 'counter');
    for (const [route, entry] of this.routes) {
      for (const [status, count] of entry.statuses) out.push(`cubecache_http_requests_total{route="${route}",status="${status}"} ${count}`);
    }
    head('cubecache_http_request_duration_seconds', 'Time from request to answer, by route.', 'histogram');
    for (const [route, h] of this.routes) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += h.buckets[i]!;
        out.push(`cubecache_http_request_duration_seconds_bucket{route="${route}",le="${le}"} ${cumulative}`);
      });
      out.push(`cubecache_http_request_duration_seconds_bucket{route="${route}",le="+Inf"} ${h.count}`);
      out.push(`cubecache_http_request_duration_seconds_sum{route="${route}"} ${h.sum}`);
      out.push(`cubecache_http_request_duration_seconds_count{route="${route}"} ${h.count}`);
    }
    const memory = process.memoryUsage();
    const samples: Sample[] = [
      { name: 'cubecache_cells_read_total', help: 'Cells read (single, batch and range reads).', type: 'counter', value: this.cellsRead },
      { name: 'cubecache_cells_written_total', help: 'Cells written (single, batch and range writes).', type: 'counter', value: this.cellsWritten },
      { name: 'cubecache_conditional_write_conflicts_total', help: 'Conditional writes refused with 409.', type: 'counter', value: this.conflicts },
      { name: 'cubecache_auth_failures_total', help: 'Requests refused with 401.', type: 'counter', value: this.authFailures },
      { name: 'cubecache_auth_throttled_total', help: 'Requests refused with 429 after repeated failed logins.', type: 'counter', value: this.loginsThrottled },
      { name: 'cubecache_event_loop_delay_seconds', help: 'Event-loop delay since start, by quantile.', type: 'gauge', value: this.loopDelay.percentile(50) / 1e9, labels: { quantile: '0.5' } },
      { name: 'cubecache_event_loop_delay_seconds', help: '', type: 'gauge', value: this.loopDelay.percentile(99) / 1e9, labels: { quantile: '0.99' } },
      { name: 'cubecache_event_loop_delay_seconds', help: '', type: 'gauge', value: this.loopDelay.max / 1e9, labels: { quantile: '1' } },
      { name: 'process_resident_memory_bytes', help: 'Resident memory.', type: 'gauge', value: memory.rss },
      { name: 'nodejs_heap_used_bytes', help: 'V8 heap in use.', type: 'gauge', value: memory.heapUsed },
      { name: 'nodejs_external_memory_bytes', help: 'Memory outside the V8 heap, array buffers included (the world lives here).', type: 'gauge', value: memory.external },
      ...extra,
    ];
    let last = '';
    for (const sample of samples) {
      if (sample.name !== last) head(sample.name, sample.help, sample.type);
      last = sample.name;
      const labels = sample.labels ? `{${Object.entries(sample.labels).map(([k, v]) => `${k}="${v}"`).join(',')}}` : '';
      out.push(`${sample.name}${labels} ${Number.isFinite(sample.value) ? sample.value : 0}`);
    }
    return out.join('\n') + '\n';
  }
}
