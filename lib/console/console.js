// The operator console: the world as a map over time, who changed a block, and a player's rollback, all
// through the same HTTP API as curl (relative URLs, the browser's Basic credentials). No framework: the
// page's state is one object, kept after `#` in the address so that an address reproduces the screen.

/** The colours a rollback preview paints over the map's columns (the legend shows them; tests read them there). */
const RESTORE_COLOUR = [0, 225, 255];
const KEPT_COLOUR = [255, 64, 160];
/** Where the world has nothing (the map's transparent pixels), and outside the world. */
const EMPTY_COLOUR = '#23282f';
const OUTSIDE_COLOUR = '#0d0f12';
/** Zoom levels: screen pixels per column. */
const ZOOMS = [0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32];
/** How often health, backups and the history span refresh. */
const REFRESH_MS = 10_000;

const $ = (id) => document.getElementById(id);
const canvas = $('map');
const g = canvas.getContext('2d');

/** The screen, as the address says it: `at` (ms, null: now), view, y, zoom, x/z (the column at the map's top left), sel (a column), box, by, since. */
const state = { at: null, view: 'top', y: 0, zoom: null, x: 0, z: 0, sel: null, box: null, by: '', since: null, preview: false, tool: 'pick' };
/** What the server said: shape {x,y,z}, order ("xzy": x fastest, y slowest), history span (ms), backups. */
const world = { shape: null, order: 'xzy', earliest: null, latest: null, backups: [] };
/** The map image drawn (an ImageBitmap) and the URL it came from. */
let mapImage = null;
let mapUrlShown = '';
/** A rollback preview: column key (x + z * width) → 'restore' | 'kept', and the answer's counts. */
let preview = null;
let busy = 0;

// ---- the address ------------------------------------------------------------------------------------------

/** Reads the state from the address's `#…`; unknown or bad values keep their defaults. */
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const num = (name) => (params.has(name) && Number.isFinite(Number(params.get(name))) ? Number(params.get(name)) : undefined);
  const at = params.get('at');
  state.at = at && !Number.isNaN(Date.parse(at)) ? Date.parse(at) : null;
  state.view = params.get('view') === 'slice' ? 'slice' : 'top';
  state.y = Math.max(0, Math.floor(num('y') ?? 0));
  state.zoom = ZOOMS.includes(num('zoom')) ? num('zoom') : null;
  state.x = num('x') ?? 0;
  state.z = num('z') ?? 0;
  const sel = params.get('sel')?.split(',').map(Number);
  state.sel = sel?.length === 2 && sel.every(Number.isInteger) ? sel : null;
  const box = params.get('box')?.split(',').map(Number);
  state.box = box?.length === 6 && box.every((n) => Number.isInteger(n) && n >= 0) ? box : null;
  state.by = params.get('by') ?? '';
  const since = params.get('since');
  state.since = since && !Number.isNaN(Date.parse(since)) ? Date.parse(since) : null;
  state.preview = params.get('preview') === '1';
}

/** Writes the state into the address (replacing, so the back button is not flooded by every drag). */
function writeHash() {
  const parts = [];
  const put = (name, value) => parts.push(`${name}=${encodeURIComponent(value).replace(/%3A/g, ':').replace(/%2C/g, ',')}`);
  if (state.at !== null) put('at', iso(state.at));
  put('view', state.view);
  if (state.view === 'slice') put('y', state.y);
  put('zoom', state.zoom);
  put('x', round2(state.x));
  put('z', round2(state.z));
  if (state.sel) put('sel', state.sel.join(','));
  if (state.box) put('box', state.box.join(','));
  if (state.by) put('by', state.by);
  if (state.since !== null) put('since', iso(state.since));
  if (preview) put('preview', '1');
  history.replaceState(null, '', `#${parts.join('&')}`);
}

const iso = (ms) => new Date(ms).toISOString();
const round2 = (n) => Math.round(n * 100) / 100;

// ---- the server -------------------------------------------------------------------------------------------

/** fetch with the page's credentials; throws an Error carrying the server's JSON error for any answer but 2xx. */
async function api(path, options = {}) {
  busy++;
  document.body.dataset.busy = String(busy);
  try {
    const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...options });
    if (!res.ok) {
      let message = res.statusText;
      try { message = (await res.json()).error ?? message; } catch { /* not JSON */ }
      throw new Error(`${res.status}: ${message}`);
    }
    return res;
  } finally {
    busy--;
    document.body.dataset.busy = String(busy);
  }
}

const getJson = async (path) => (await api(path)).json();
const postJson = async (path, body) => (await api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })).json();

/** The flat index of (x, y, z) in the world's order (its first letter varies fastest). */
function indexOf(x, y, z) {
  const at = { x, y, z };
  let index = 0;
  let stride = 1;
  for (const axis of world.order) {
    index += at[axis] * stride;
    stride *= world.shape[axis];
  }
  return index;
}

/** The (x, y, z) of a flat index. */
function coordsOf(index) {
  const at = {};
  for (const axis of world.order) {
    at[axis] = index % world.shape[axis];
    index = Math.floor(index / world.shape[axis]);
  }
  return at;
}

// ---- the map ----------------------------------------------------------------------------------------------

function mapUrl() {
  let url = `map.png?view=${state.view}`;
  if (state.view === 'slice') url += `&y=${state.y}`;
  if (state.at !== null) url += `&at=${iso(state.at)}`;
  return url;
}

let loading = false;
let wanted = false;
let forced = false;

/**
 * Fetches and draws the map for the state, one request at a time: while one is in flight, later calls
 * only mark that the newest state is wanted, so dragging the time slider never piles up requests and the
 * last position is always the one drawn. `force` fetches even an address already shown (the world changed).
 */
async function loadMap(force = false) {
  forced ||= force;
  if (loading) {
    wanted = true;
    return;
  }
  loading = true;
  document.body.dataset.map = 'loading';
  try {
    do {
      wanted = false;
      const url = mapUrl();
      if (url === mapUrlShown && !forced) continue;
      forced = false;
      const blob = await (await api(url)).blob();
      const image = await createImageBitmap(blob);
      mapImage?.close();
      mapImage = image;
      mapUrlShown = url;
      render();
      if (!performance.getEntriesByName('cubecache:first-map').length) performance.mark('cubecache:first-map');
    } while (wanted || forced);
    document.body.dataset.map = mapUrlShown;
    say('');
  } catch (err) {
    document.body.dataset.map = 'failed';
    say(`The map could not be drawn: ${err.message}`, true);
  } finally {
    loading = false;
  }
}

/** The screen position of column (0, 0)'s top left corner, in whole CSS pixels (so columns land on pixels). */
function origin() {
  return { ox: Math.round(-state.x * state.zoom), oz: Math.round(-state.z * state.zoom) };
}

/** The column under a point of the canvas (CSS pixels), or undefined outside the world. */
function columnAt(px, py) {
  const { ox, oz } = origin();
  const x = Math.floor((px - ox) / state.zoom);
  const z = Math.floor((py - oz) / state.zoom);
  return x >= 0 && z >= 0 && x < world.shape.x && z < world.shape.z ? { x, z } : undefined;
}

/** Draws the map, the preview's columns, the box and the picked column. */
function render() {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.imageSmoothingEnabled = false;
  g.fillStyle = OUTSIDE_COLOUR;
  g.fillRect(0, 0, width, height);
  if (!world.shape) return;
  const { ox, oz } = origin();
  const zoom = state.zoom;
  g.fillStyle = EMPTY_COLOUR;
  g.fillRect(ox, oz, world.shape.x * zoom, world.shape.z * zoom);
  if (mapImage) g.drawImage(mapImage, ox, oz, mapImage.width * zoom, mapImage.height * zoom);
  if (preview) {
    for (const [key, kind] of preview.columns) {
      const x = key % world.shape.x;
      const z = (key - x) / world.shape.x;
      g.fillStyle = `rgb(${(kind === 'kept' ? KEPT_COLOUR : RESTORE_COLOUR).join(',')})`;
      g.fillRect(ox + x * zoom, oz + z * zoom, zoom, zoom);
    }
  }
  const box = dragBox ?? state.box;
  if (box) {
    g.strokeStyle = '#ffd54a';
    g.lineWidth = 1;
    g.setLineDash([4, 3]);
    g.strokeRect(ox + box[0] * zoom - 0.5, oz + box[2] * zoom - 0.5, box[3] * zoom + 1, box[5] * zoom + 1);
    g.setLineDash([]);
  }
  if (state.sel) {
    g.strokeStyle = '#ffffff';
    g.lineWidth = 2;
    g.strokeRect(ox + state.sel[0] * zoom - 1, oz + state.sel[1] * zoom - 1, zoom + 2, zoom + 2);
  }
  $('zoom-value').value = `${state.zoom}×`;
}

/** Zoom and position that show the whole world in the map, centred. */
function fit() {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  const best = Math.min(width / world.shape.x, height / world.shape.z) * 0.94;
  state.zoom = [...ZOOMS].reverse().find((z) => z <= best) ?? ZOOMS[0];
  state.x = round2(-(width / state.zoom - world.shape.x) / 2);
  state.z = round2(-(height / state.zoom - world.shape.z) / 2);
}

/** Zooms to the next level in `direction` (+1 in, -1 out), keeping the column under (px, py) in place. */
function zoomBy(direction, px = canvas.clientWidth / 2, py = canvas.clientHeight / 2) {
  const i = ZOOMS.indexOf(state.zoom) + direction;
  if (i < 0 || i >= ZOOMS.length) return;
  const wx = state.x + px / state.zoom;
  const wz = state.z + py / state.zoom;
  state.zoom = ZOOMS[i];
  state.x = round2(wx - px / state.zoom);
  state.z = round2(wz - py / state.zoom);
  writeHash();
  render();
}

// ---- pointer: pan, pick, draw a box -----------------------------------------------------------------------

let drag = null;
let dragBox = null;

canvas.addEventListener('pointerdown', (event) => {
  if (!world.shape || event.button !== 0) return;
  canvas.setPointerCapture(event.pointerId);
  drag = { px: event.offsetX, py: event.offsetY, x: state.x, z: state.z, moved: false, start: columnAt(event.offsetX, event.offsetY) };
});

canvas.addEventListener('pointermove', (event) => {
  if (!world.shape) return;
  const column = columnAt(event.offsetX, event.offsetY);
  $('hover').value = column ? `x ${column.x}, z ${column.z}` : '';
  if (!drag) return;
  const dx = event.offsetX - drag.px;
  const dy = event.offsetY - drag.py;
  if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
  if (!drag.moved) return;
  if (state.tool === 'box') {
    const end = clampColumn(event.offsetX, event.offsetY);
    const start = drag.start ?? end;
    dragBox = boxOf(start, end);
  } else {
    state.x = drag.x - dx / state.zoom;
    state.z = drag.z - dy / state.zoom;
  }
  render();
});

canvas.addEventListener('pointerup', (event) => {
  if (!drag) return;
  const { moved, start } = drag;
  drag = null;
  if (state.tool === 'box') {
    const end = clampColumn(event.offsetX, event.offsetY);
    if (start || moved) setBox(boxOf(start ?? end, end));
    dragBox = null;
    render();
    return;
  }
  if (moved) {
    state.x = round2(state.x);
    state.z = round2(state.z);
    writeHash();
    return;
  }
  const column = columnAt(event.offsetX, event.offsetY);
  if (column) {
    state.sel = [column.x, column.z];
    writeHash();
    render();
    inspect();
  }
});

canvas.addEventListener('wheel', (event) => {
  event.preventDefault();
  zoomBy(event.deltaY < 0 ? 1 : -1, event.offsetX, event.offsetY);
}, { passive: false });

/** The column nearest a point, inside the world. */
function clampColumn(px, py) {
  const { ox, oz } = origin();
  const clamp = (n, max) => Math.min(max - 1, Math.max(0, n));
  return { x: clamp(Math.floor((px - ox) / state.zoom), world.shape.x), z: clamp(Math.floor((py - oz) / state.zoom), world.shape.z) };
}

/** The box over the columns between two corners, the world's whole height. */
function boxOf(a, b) {
  const x = Math.min(a.x, b.x);
  const z = Math.min(a.z, b.z);
  return [x, 0, z, Math.abs(a.x - b.x) + 1, world.shape.y, Math.abs(a.z - b.z) + 1];
}

function setBox(box) {
  state.box = box;
  $('rollback-box').value = box ? box.join(',') : '';
  clearPreview();
  writeHash();
}

// ---- the cell inspector -----------------------------------------------------------------------------------

/** Counts inspections, so the answer to an earlier click that arrives late does not overwrite a later one. */
let inspections = 0;

/** Shows the picked column's topmost non-empty cell (top view) or its cell at the slice's height, at the shown instant, and that cell's history. */
async function inspect() {
  if (!state.sel || !world.shape) return;
  const turn = ++inspections;
  const [x, z] = state.sel;
  const at = state.at === null ? '' : `&at=${iso(state.at)}`;
  const summary = $('cell-summary');
  const table = $('cell-history');
  try {
    let y;
    let bytes;
    if (state.view === 'top') {
      const column = new Uint8Array(await (await api(`cells?box=${x},0,${z},1,${world.shape.y},1${at}`)).arrayBuffer());
      if (turn !== inspections) return;
      // A column's cells come in ascending index order, which is ascending y whatever the order.
      for (let i = world.shape.y - 1; i >= 0; i--) {
        if (column[i * 4] | column[i * 4 + 1] | column[i * 4 + 2] | column[i * 4 + 3]) {
          y = i;
          bytes = column.subarray(i * 4, i * 4 + 4);
          break;
        }
      }
      if (y === undefined) {
        summary.textContent = `Column x ${x}, z ${z} is empty${state.at === null ? '' : ` at ${iso(state.at)}`}.`;
        table.hidden = true;
        document.body.dataset.inspected = `${x},${z}`;
        return;
      }
    } else {
      y = state.y;
      bytes = new Uint8Array(await (await api(`cells?box=${x},${y},${z},1,1,1${at}`)).arrayBuffer());
    }
    const index = indexOf(x, y, z);
    const since = world.earliest === null ? '' : `&since=${iso(world.earliest)}`;
    const { changes } = await getJson(`history?start=${index}&count=1&limit=50${since}`);
    if (turn !== inspections) return;
    summary.textContent = `x ${x}, y ${y}, z ${z} (cell ${index}): ${describeCell(bytes)}${state.at === null ? '' : ` at ${iso(state.at)}`}. ${changes.length ? `${changes.length} change${changes.length === 1 ? '' : 's'} kept, newest first:` : 'No change to it in the kept history.'}`;
    const body = table.tBodies[0];
    body.replaceChildren(...changes.map((change) => {
      const row = document.createElement('tr');
      const when = cellText(formatTime(change.at));
      when.title = change.at;
      if (state.at !== null && Date.parse(change.at) > state.at) row.className = 'later';
      const who = cellText(change.by || '(nobody named)');
      who.className = 'who';
      who.title = change.by;
      row.append(when, who, cellText(shortCell(change.before)), cellText(shortCell(change.after)));
      return row;
    }));
    table.hidden = changes.length === 0;
    document.body.dataset.inspected = `${x},${z}`;
  } catch (err) {
    say(`The cell could not be read: ${err.message}`, true);
  }
}

function cellText(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function describeCell(b) {
  return b[0] | b[1] | b[2] | b[3] ? `category ${b[0]}, rotation ${b[1]}, sides ${b[2]}/${b[3]}` : 'empty';
}

function shortCell(cell) {
  return cell.category | cell.rotation | cell.sideA | cell.sideB ? `cat ${cell.category}${cell.rotation ? ` r${cell.rotation}` : ''}` : 'empty';
}

function formatTime(isoText) {
  const d = new Date(isoText);
  return `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 19)}`;
}

// ---- the rollback -----------------------------------------------------------------------------------------

/** The rollback the form describes, as POST /rollback's body. */
function rollbackBody() {
  const box = $('rollback-box').value.trim().split(',').map(Number);
  const since = $('rollback-since').value.trim();
  return {
    by: $('rollback-by').value.trim(),
    since: since || (world.earliest === null ? iso(Date.now() - 3_600_000) : iso(world.earliest)),
    box,
  };
}

async function previewRollback() {
  const body = rollbackBody();
  state.box = body.box;
  state.by = body.by;
  state.since = $('rollback-since').value.trim() ? Date.parse(body.since) : null;
  try {
    const answer = await postJson('rollback', { ...body, preview: true });
    const columns = new Map();
    const mark = (index, kind) => {
      const c = coordsOf(index);
      const key = c.x + c.z * world.shape.x;
      if (kind === 'kept' || !columns.has(key)) columns.set(key, kind);
    };
    // Whole runs when the server gives them (its cell lists stop at the first thousand), else the cells.
    if (Array.isArray(answer.restore)) for (const [start, count] of answer.restore) for (let i = start; i < start + count; i++) mark(i, 'restore');
    else for (const cell of answer.cells) mark(cell.index, 'restore');
    if (Array.isArray(answer.skippedRuns)) for (const [start, count] of answer.skippedRuns) for (let i = start; i < start + count; i++) mark(i, 'kept');
    else for (const cell of answer.skippedCells) mark(cell.index, 'kept');
    preview = { columns, restored: answer.restored, skipped: answer.skipped, body };
    const restoreColumns = [...columns.values()].filter((k) => k === 'restore').length;
    $('rollback-result').textContent = answer.restored === 0 && answer.skipped === 0
      ? `${body.by} changed nothing in this box since ${formatTime(body.since)}.`
      : `${answer.restored} cell${answer.restored === 1 ? '' : 's'} to put back in ${restoreColumns} column${restoreColumns === 1 ? '' : 's'}; ${answer.skipped === 0 ? 'none kept.' : `${answer.skipped} kept (someone else changed them later) in ${columns.size - restoreColumns}.`}`;
    // Past its bounds the server lists only the first runs: the map shows those, the counts are exact.
    if (answer.truncated) $('rollback-result').textContent += ' The server listed only part of them: the map shows that part.';
    $('legend').hidden = columns.size === 0;
    $('rollback-apply').disabled = answer.restored === 0;
    $('rollback-clear').disabled = false;
    $('confirm').hidden = true;
    writeHash();
    render();
    document.body.dataset.preview = String(answer.restored);
  } catch (err) {
    say(`The preview failed: ${err.message}`, true);
  }
}

function clearPreview() {
  preview = null;
  $('legend').hidden = true;
  $('rollback-apply').disabled = true;
  $('rollback-clear').disabled = true;
  $('confirm').hidden = true;
  $('rollback-result').textContent = 'Draw a box, name a player, and preview what a rollback would put back.';
  delete document.body.dataset.preview;
  render();
}

function askToApply() {
  if (!preview) return;
  const { body, restored, skipped } = preview;
  $('confirm-text').textContent = `Put back ${restored} cell${restored === 1 ? '' : 's'} that ${body.by} changed in box ${body.box.join(',')} since ${formatTime(body.since)}? ${skipped ? `${skipped} cell${skipped === 1 ? '' : 's'} someone else changed later stay as they are. ` : ''}This is one change, by you, and can itself be undone.`;
  $('confirm').hidden = false;
  $('confirm-yes').focus();
}

async function applyRollback() {
  if (!preview) return;
  const { body } = preview;
  $('confirm').hidden = true;
  try {
    const answer = await postJson('rollback', body);
    preview = null;
    $('legend').hidden = true;
    $('rollback-apply').disabled = true;
    $('rollback-result').textContent = `Rolled back: ${answer.restored} cell${answer.restored === 1 ? '' : 's'} put back, ${answer.skipped} kept.`;
    // The change is now: show the world as it is.
    state.at = null;
    writeHash();
    await refreshSpan();
    await loadMap(true);
    inspect();
    refreshHealth();
    document.body.dataset.applied = String(answer.restored);
  } catch (err) {
    say(`The rollback failed: ${err.message}`, true);
  }
}

// ---- time, backups, health --------------------------------------------------------------------------------

/** Places the slider for state.at over the history span (its right end is now). */
function placeSlider() {
  const slider = $('time');
  if (world.earliest === null) {
    slider.disabled = true;
    $('instant').value = 'now (no history kept yet)';
    return;
  }
  slider.disabled = false;
  const span = Math.max(0, Math.floor((world.latest - world.earliest) / 1000));
  slider.max = String(span);
  slider.value = String(state.at === null ? span : Math.min(span, Math.max(0, Math.round((state.at - world.earliest) / 1000))));
  $('instant').value = state.at === null ? 'now' : iso(state.at);
  for (const li of $('backup-list').children) li.classList.toggle('shown', state.at !== null && Date.parse(li.dataset.at) === state.at);
}

function setInstant(at) {
  state.at = at;
  writeHash();
  placeSlider();
  loadMap();
}

async function refreshSpan() {
  const { backups, history } = await getJson('backups');
  world.backups = backups;
  world.earliest = history ? Date.parse(history.earliest) : null;
  world.latest = history ? Date.parse(history.latest) : null;
  $('history-span').textContent = history
    ? `History from ${formatTime(history.earliest)}${history.granularity === 'change' ? ', to the change' : ', at snapshots only (shipping is off)'}.`
    : 'No history kept yet: it starts at the first backup.';
  $('backup-list').replaceChildren(...backups.map((backup) => {
    const li = document.createElement('li');
    li.dataset.at = backup.createdAt;
    li.title = `${backup.name}: show the world as this backup holds it`;
    const when = document.createElement('span');
    when.textContent = formatTime(backup.createdAt);
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = backup.compressedBytes === undefined ? '' : formatBytes(backup.compressedBytes);
    li.append(when, size);
    li.addEventListener('click', () => {
      setInstant(Date.parse(backup.createdAt));
      inspect();
    });
    return li;
  }));
  placeSlider();
}

function formatBytes(n) {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${Math.round(n / 102.4) / 10} KiB` : `${Math.round(n / 104857.6) / 10} MiB`;
}

async function refreshHealth() {
  try {
    const health = await getJson('healthcheck');
    const backup = health.backup ?? {};
    const role = health.role ?? (backup.fenced ? 'fenced' : 'leader');
    badge('health-role', `role: ${role}`, backup.fenced || role === 'fenced' ? 'bad' : 'ok');
    const unsaved = backup.unsavedChanges;
    badge('health-unsaved', unsaved ? `unsaved since ${backup.unsavedSince ? formatTime(backup.unsavedSince).slice(11) : '?'}` : 'nothing unsaved', unsaved ? 'warn' : 'ok');
    const shipped = backup.lastShip?.at ?? backup.lastSuccessAt;
    const failing = backup.lastShipError && (!backup.lastShip || backup.lastShipError.at > backup.lastShip.at);
    badge('health-shipped', shipped ? `last shipment ${formatTime(shipped)}` : 'nothing shipped yet', failing ? 'bad' : shipped ? 'ok' : 'warn');
    if (failing) $('health-shipped').title = `Shipping fails: ${backup.lastShipError.error}`;
  } catch (err) {
    badge('health-role', 'unreachable', 'bad');
    say(`Health: ${err.message}`, true);
  }
}

function badge(id, text, level) {
  const el = $(id);
  el.textContent = text;
  el.className = level;
}

function say(text, error = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('error', error);
}

// ---- controls ---------------------------------------------------------------------------------------------

function setView(view) {
  state.view = view;
  $('view-top').setAttribute('aria-pressed', String(view === 'top'));
  $('view-slice').setAttribute('aria-pressed', String(view === 'slice'));
  $('height').disabled = view !== 'slice';
  canvas.setAttribute('aria-label', view === 'top' ? 'The world seen from above' : `The world's layer at y ${state.y}`);
  writeHash();
  loadMap();
}

function setTool(tool) {
  state.tool = tool;
  $('tool-pick').setAttribute('aria-pressed', String(tool === 'pick'));
  $('tool-box').setAttribute('aria-pressed', String(tool === 'box'));
  canvas.classList.toggle('box', tool === 'box');
}

$('view-top').addEventListener('click', () => setView('top'));
$('view-slice').addEventListener('click', () => setView('slice'));
$('height').addEventListener('input', (event) => {
  state.y = Number(event.target.value);
  $('height-value').value = String(state.y);
  writeHash();
  if (state.view === 'slice') loadMap();
});
$('zoom-in').addEventListener('click', () => zoomBy(1));
$('zoom-out').addEventListener('click', () => zoomBy(-1));
$('zoom-fit').addEventListener('click', () => {
  fit();
  writeHash();
  render();
});
$('tool-pick').addEventListener('click', () => setTool('pick'));
$('tool-box').addEventListener('click', () => setTool('box'));
$('time').addEventListener('input', (event) => {
  const value = Number(event.target.value);
  setInstant(value >= Number(event.target.max) ? null : world.earliest + value * 1000);
});
$('time').addEventListener('change', () => inspect());
$('time-now').addEventListener('click', async () => {
  await refreshSpan();
  setInstant(null);
  inspect();
});
$('rollback-form').addEventListener('submit', (event) => {
  event.preventDefault();
  previewRollback();
});
$('rollback-box').addEventListener('change', (event) => {
  const box = event.target.value.trim().split(',').map(Number);
  state.box = box.length === 6 && box.every((n) => Number.isInteger(n) && n >= 0) ? box : null;
  clearPreview();
  writeHash();
});
$('rollback-apply').addEventListener('click', askToApply);
$('rollback-clear').addEventListener('click', () => {
  clearPreview();
  writeHash();
});
$('confirm-yes').addEventListener('click', applyRollback);
$('confirm-no').addEventListener('click', () => {
  $('confirm').hidden = true;
});
window.addEventListener('hashchange', () => {
  readHash();
  applyState();
});
new ResizeObserver(() => render()).observe($('map-frame'));

/** Puts the state into the controls and draws it. */
function applyState() {
  if (state.zoom === null) fit();
  state.y = Math.min(state.y, world.shape.y - 1);
  $('height').max = String(world.shape.y - 1);
  $('height').value = String(state.y);
  $('height-value').value = String(state.y);
  $('rollback-box').value = state.box ? state.box.join(',') : '';
  $('rollback-by').value = state.by;
  $('rollback-since').value = state.since === null ? '' : iso(state.since);
  setView(state.view);
  placeSlider();
  render();
  if (state.sel) inspect();
  if (state.preview && state.box && state.by) previewRollback();
}

async function start() {
  readHash();
  $('swatch-restore').style.backgroundColor = `rgb(${RESTORE_COLOUR.join(',')})`;
  $('swatch-kept').style.backgroundColor = `rgb(${KEPT_COLOUR.join(',')})`;
  document.body.dataset.busy = '0';
  try {
    const [stats] = await Promise.all([getJson('stats'), refreshSpan(), refreshHealth()]);
    if (!stats.shape) {
      $('world').textContent = `${stats.cells.toLocaleString('en')} cells, flat`;
      const note = $('map-note');
      note.textContent = 'This world is flat: it has no x, y and z to draw. Start the server with WORLD_SHAPE (for example 256x256x256) to see it as a map.';
      note.hidden = false;
      render();
      return;
    }
    world.shape = stats.shape;
    world.order = stats.order ?? 'xzy';
    $('world').textContent = `${world.shape.x}×${world.shape.y}×${world.shape.z} (x×y×z, y up), order ${world.order}`;
    applyState();
    setInterval(() => {
      refreshHealth();
      refreshSpan().catch((err) => say(`Backups: ${err.message}`, true));
    }, REFRESH_MS);
  } catch (err) {
    say(`The console could not start: ${err.message}`, true);
  }
}

start();
