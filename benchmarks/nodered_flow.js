// The body of the Node-RED peer's function node (``wattline bench ingest --peer node-red``).
//
// What a plant engineer would build in Node-RED to get wattline's figures, written to the
// same rules (docs/semantics.md): per-meter counter deltas (a decrease is a reset whose
// delta is the new value, or a wrap at the meter's rollover), readings put in order per
// meter and judged against the line's watermark (newest reading time, capped at the wall
// clock, minus the allowed lateness), ticks every EMIT_EVERY_MS once the watermark passes
// them, and per line the 15m/1h/24h sums of kgce, kWh and tonnes with kgce/t and kWh/t.
//
// ``CONFIG`` is prepended by benchmarks/nodered_flow.py. The state lives in the node's
// context (in memory) and is shared with the HTTP endpoints through the flow context.

const E = CONFIG.emitEveryMs;
const LATENESS = CONFIG.allowedLatenessMs;
const SPANS = CONFIG.windowsMs.map((w) => w / E);
const RING = Math.max(...SPANS);
const NW = SPANS.length;

let s = context.get("wattline");
if (s === undefined) {
    s = {messages: 0, readings: 0, ticks: 0, rows: [], lines: new Map(), meters: new Map(),
         dropped: {late: 0, duplicate: 0, implausible: 0, unknown: 0}};
    context.set("wattline", s);
    flow.set("wattline", s);
}

function newLine() {
    return {newest: null, base: null, nextTick: null, emitted: 0, meters: [],
            ring: new Float64Array(RING * 3), sums: new Float64Array(NW * 3)};
}

function newMeter(key, kind) {
    const production = kind === "production";
    return {kgce: production ? 0 : CONFIG.kgcePerKwh, kwh: production ? 0 : 1,
            t: production ? 1 : 0, rollover: CONFIG.rollover[key] || 0,
            ts: [], v: [], baseline: null};
}

// Put (t, x) in the meter's waiting readings in time order; false when it is a duplicate.
function wait(meter, t, x) {
    const ts = meter.ts;
    let hi = ts.length;
    if (hi === 0 || ts[hi - 1] < t) {
        ts.push(t);
        meter.v.push(x);
        return true;
    }
    let lo = 0;
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (ts[mid] < t) lo = mid + 1; else hi = mid;
    }
    if (ts[lo] === t) return false;
    ts.splice(lo, 0, t);
    meter.v.splice(lo, 0, x);
    return true;
}

function emit(lineKey, line, tick) {
    const tickMs = tick * E;
    let kgce = 0, kwh = 0, tonnes = 0;
    for (const meter of line.meters) {
        const ts = meter.ts;
        let n = 0;
        while (n < ts.length && ts[n] <= tickMs) {
            const x = meter.v[n];
            n += 1;
            if (meter.baseline === null) { meter.baseline = x; continue; }
            let d = x - meter.baseline;
            if (d < 0) d = meter.rollover > 0 ? x + meter.rollover - meter.baseline : x;
            meter.baseline = x;
            kgce += d * meter.kgce;
            kwh += d * meter.kwh;
            tonnes += d * meter.t;
        }
        if (n > 0) { ts.splice(0, n); meter.v.splice(0, n); }
    }
    const slot = (line.emitted % RING) * 3;
    const ring = line.ring, sums = line.sums;
    for (let w = 0; w < NW; w++) {
        const o = w * 3;
        if (line.emitted >= SPANS[w]) {
            const old = ((line.emitted - SPANS[w]) % RING) * 3;
            sums[o] -= ring[old]; sums[o + 1] -= ring[old + 1]; sums[o + 2] -= ring[old + 2];
        }
        sums[o] += kgce; sums[o + 1] += kwh; sums[o + 2] += tonnes;
    }
    ring[slot] = kgce; ring[slot + 1] = kwh; ring[slot + 2] = tonnes;
    line.emitted += 1;
    s.ticks += 1;
    const windows = [];
    for (let w = 0; w < NW; w++) {
        const o = w * 3, p = sums[o + 2];
        windows.push({energy_kgce: sums[o], electricity_kwh: sums[o + 1], production_t: p,
                      kgce_per_t: p > 0 ? sums[o] / p : null,
                      kwh_per_t: p > 0 ? sums[o + 1] / p : null});
    }
    if (CONFIG.keepRows) s.rows.push({line: lineKey, tick_ms: tickMs, windows: windows});
}

const parts = msg.topic.split("/");
const body = msg.payload;
s.messages += 1;
if (parts.length !== 5 || typeof body !== "object" || body === null) {
    s.dropped.unknown += 1;
    return null;
}
let ts = body.ts, v = body.v;
if (!Array.isArray(ts)) { ts = [ts]; v = [v]; }
if (!Array.isArray(v) || v.length !== ts.length) {
    s.dropped.unknown += 1;
    return null;
}
s.readings += ts.length;
const lineKey = parts[1] + "/" + parts[2];
const meterKey = lineKey + "/" + parts[3] + "/" + parts[4];
let line = s.lines.get(lineKey);
if (line === undefined) { line = newLine(); s.lines.set(lineKey, line); }
let meter = s.meters.get(meterKey);
if (meter === undefined) {
    meter = newMeter(meterKey, parts[3]);
    s.meters.set(meterKey, meter);
    line.meters.push(meter);
}
const now = Date.now();
let watermark = null;
if (line.newest !== null) {
    line.base = Math.max(line.base, Math.min(line.newest, now));
    watermark = line.base - LATENESS;
}
let oldest = Infinity, newest = -Infinity;
for (let i = 0; i < ts.length; i++) {
    const t = ts[i], x = v[i];
    if (typeof t !== "number" || typeof x !== "number" || !(Math.abs(x) < 1e15)) {
        s.dropped.implausible += 1;
    } else if (watermark !== null && t <= watermark) {
        s.dropped.late += 1;
    } else if (!wait(meter, t, x)) {
        s.dropped.duplicate += 1;
    } else {
        if (t < oldest) oldest = t;
        if (t > newest) newest = t;
    }
}
if (newest === -Infinity) return null;
if (line.newest === null) {
    line.newest = newest;
    line.base = Math.min(newest, now);
    line.nextTick = Math.ceil(Math.min(oldest, line.base - LATENESS + 1) / E);
} else {
    line.newest = Math.max(line.newest, newest);
    line.base = Math.max(line.base, Math.min(line.newest, now));
}
watermark = line.base - LATENESS;
while (line.nextTick * E <= watermark) {
    emit(lineKey, line, line.nextTick);
    line.nextTick += 1;
}
return null;
