import { LIMITS } from '../protocol.js'

/**
 * The script every isolate runs before user code. It locks the global down and evaluates to
 * `install(factory, functionName, outputNames)`, which runs the user module and returns
 * `run(eventsJson, invocationId, deadline) -> [envelope]`, the invocation's JSON envelope in a
 * one-element array. The host copies the array out after the isolate ran its microtasks (they
 * run when the call returns), so an async function that settled by then has filled it in; one
 * still pending leaves `[null]`, and `run(null)` then returns a promise of its envelope. (A
 * settled array costs the host a few microseconds less per call than a promise result.)
 *
 * Nothing from the host is placed in the isolate: no References, no Callbacks. Logs and outputs
 * are buffered here and returned with the result, so user code has no channel to the host but
 * its return value. Intrinsics are captured first, so a function that replaces JSON or Promise
 * only breaks itself. It is plain JavaScript in a string so that no build tool rewrites it.
 */
export const BOOTSTRAP = String.raw`(function () {
'use strict';
const G = globalThis;
const JSONstringify = JSON.stringify, JSONparse = JSON.parse;
const ObjectFreeze = Object.freeze, ReflectApply = Reflect.apply, ReflectHas = Reflect.has;
const StringCtor = String, DateNow = Date.now, ArrayIsArray = Array.isArray;
const PromiseCtor = Promise, PromiseThen = Promise.prototype.then;
const PromiseResolve = (v) => ReflectApply(Promise.resolve, PromiseCtor, [v]);
const ArrayPush = Array.prototype.push, StringSlice = String.prototype.slice;
const push = (a, v) => ReflectApply(ArrayPush, a, [v]);
const slice = (s, a, b) => ReflectApply(StringSlice, s, [a, b]);
for (const k of ['SharedArrayBuffer', 'Atomics', 'WebAssembly']) delete G[k];

const MAX_RESULT = ${LIMITS.resultBytes}, MAX_LINES = ${LIMITS.logLines};
const MAX_LOG = ${LIMITS.logBytes}, MAX_LINE = ${LIMITS.logLineBytes}, LINE_OVERHEAD = ${LIMITS.logLineOverhead};
const MARK = '...[truncated]';
const StringCharCodeAt = String.prototype.charCodeAt, RegExpExec = RegExp.prototype.exec;
const NON_ASCII = /[^\x00-\x7f]/;
let current = null;
let initState = newLogState();

function newLogState() {
  return { lines: [], bytes: 0, droppedLines: 0, droppedChars: 0, truncated: 0, closed: false };
}
function fmt(v) {
  if (typeof v === 'string') return v;
  try {
    if (v !== null && typeof v === 'object' && typeof v.message === 'string' && typeof v.stack === 'string') return v.stack;
    const s = JSONstringify(v);
    return s === undefined ? StringCtor(v) : s;
  } catch (e) {
    try { return StringCtor(v); } catch (e2) { return '[unprintable ' + typeof v + ']'; }
  }
}
// How much of s fits in limit bytes once written as a JSON string body in UTF-8 (what it costs
// in the result envelope). Returns the number of leading characters that fit (s.length when all
// of it does) and leaves their size in fitBytes. Scans at most limit characters; never splits a
// surrogate pair.
let fitBytes = 0;
function fits(s, limit) {
  let n = 0;
  const len = s.length;
  for (let i = 0; i < len; i++) {
    const c = ReflectApply(StringCharCodeAt, s, [i]);
    let w, pair = false;
    if (c < 0x20) w = (c === 10 || c === 13 || c === 9 || c === 8 || c === 12) ? 2 : 6;
    else if (c === 34 || c === 92) w = 2;
    else if (c < 0x80) w = 1;
    else if (c < 0x800) w = 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < len ? ReflectApply(StringCharCodeAt, s, [i + 1]) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) { w = 4; pair = true; } else w = 6;
    } else if (c >= 0xdc00 && c <= 0xdfff) w = 6;
    else w = 3;
    if (n + w > limit) { fitBytes = n; return i; }
    n += w;
    if (pair) i++;
  }
  fitBytes = n;
  return len;
}
// fits() with a native fast path for the common line: ASCII and short enough, where the JSON
// escaped length is the size (the per-character loop costs a cold isolate real CPU time).
function measure(s, limit) {
  if (s.length <= limit && ReflectApply(RegExpExec, NON_ASCII, [s]) === null) {
    const n = JSONstringify(s).length - 2;
    if (n <= limit) { fitBytes = n; return s.length; }
  }
  return fits(s, limit);
}
// Keeps at most MAX_LINE bytes per line and MAX_LOG bytes per invocation (escaped, with a fixed
// allowance per line for level and time), so logs can never push a result past its limit.
function write(st, level, args) {
  if (st === null || st.closed) return;
  let msg = '';
  for (let i = 0; i < args.length; i++) msg += (i ? ' ' : '') + fmt(args[i]);
  const room = MAX_LOG - st.bytes - LINE_OVERHEAD;
  if (st.lines.length >= MAX_LINES || room < MARK.length + 16) {
    st.droppedLines++;
    st.droppedChars += msg.length;
    return;
  }
  const limit = room < MAX_LINE ? room : MAX_LINE;
  let n = measure(msg, limit);
  if (n < msg.length) {
    n = fits(msg, limit - MARK.length);
    fitBytes += MARK.length;
    st.truncated++;
    st.droppedChars += msg.length - n;
    msg = slice(msg, 0, n) + MARK;
  }
  st.bytes += LINE_OVERHEAD + fitBytes;
  push(st.lines, { level, msg, time: DateNow() });
}
function logger(get) {
  // Callable (info level) like Azure Functions' context.log(...), and with levels.
  const log = function () { write(get(), 'info', arguments); };
  log.debug = function () { write(get(), 'debug', arguments); };
  log.info = function () { write(get(), 'info', arguments); };
  log.warn = function () { write(get(), 'warn', arguments); };
  log.error = function () { write(get(), 'error', arguments); };
  return ObjectFreeze(log);
}
const consoleLog = logger(() => current === null ? initState : current);
G.console = ObjectFreeze({ log: consoleLog.info, info: consoleLog.info, debug: consoleLog.debug, trace: consoleLog.debug, warn: consoleLog.warn, error: consoleLog.error });

function describe(e) {
  try {
    if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
      let name, message, stack;
      try { name = e.name; } catch (x) {}
      try { message = e.message; } catch (x) {}
      try { stack = e.stack; } catch (x) {}
      if (typeof message !== 'string') {
        return { name: 'NonError', message: 'threw a non-Error ' + typeof e + ': ' + slice(fmt(e), 0, 1000) };
      }
      const out = { name: typeof name === 'string' ? slice(name, 0, 200) : 'Error', message: slice(message, 0, 4000) };
      if (typeof stack === 'string') out.stack = slice(stack, 0, 8000);
      return out;
    }
    return { name: 'NonError', message: 'threw a non-Error value: ' + slice(fmt(e), 0, 1000) };
  } catch (x) {
    return { name: 'NonError', message: 'threw a value that cannot be described' };
  }
}
// The batch from the router (see src/router/batch-json.ts): a JSON array, or, when it has raw
// bodies, "#[arrayLength,index,length,...]" then the array, then the bodies' texts. Each body is
// parsed on its own; one that is not JSON is given as its text, as a connector does when it
// decodes such a payload.
const StringIndexOf = String.prototype.indexOf;
function parseBatch(text) {
  if (ReflectApply(StringCharCodeAt, text, [0]) === 91) return JSONparse(text);
  const end = ReflectApply(StringIndexOf, text, [']']) + 1;
  const nums = JSONparse(slice(text, 1, end));
  let pos = end + nums[0];
  const events = JSONparse(slice(text, end, pos));
  for (let k = 1; k + 1 < nums.length; k += 2) {
    const raw = slice(text, pos, pos + nums[k + 1]);
    pos += nums[k + 1];
    let body;
    try { body = JSONparse(raw); } catch (e) { body = raw; }
    events[nums[k]].body = body;
  }
  return events;
}
function fail(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

return function install(factory, functionName, outputNames) {
  const outputs = new Set(outputNames);
  current = null;
  const ns = factory();
  const fn = ns !== null && typeof ns === 'object' ? ns.default : undefined;
  if (typeof fn !== 'function') throw fail('SLUICE_ERR_FUNCTION_EXPORT', 'the default export is not a function (got ' + typeof fn + ')');

  function output(st, name, value) {
    if (!outputs.has(name)) {
      const e = fail('SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN', 'output ' + JSONstringify(StringCtor(name)) + ' is not configured for function ' + functionName);
      if (st.fatal === null) st.fatal = e;
      throw e;
    }
    let s;
    try { s = JSONstringify(value); } catch (x) { s = undefined; }
    if (s === undefined) {
      const e = fail('SLUICE_ERR_FUNCTION_RESULT_INVALID', 'the value written to output ' + name + ' is not JSON data');
      if (st.fatal === null) st.fatal = e;
      throw e;
    }
    st.outBytes += s.length + name.length + 8;
    if (st.outBytes > MAX_RESULT) {
      const e = fail('SLUICE_ERR_FUNCTION_RESULT_TOO_LARGE', 'outputs exceed ' + MAX_RESULT + ' bytes');
      if (st.fatal === null) st.fatal = e;
      throw e;
    }
    push(st.outputs, '[' + JSONstringify(name) + ',' + s + ']');
  }

  function envelope(st, ok, body) {
    const lg = st.log;
    let logs = '[]';
    try { logs = JSONstringify(lg.lines); } catch (x) {}
    return '{"ok":' + ok + ',' + body + ',"logs":' + logs + ',"dropped":{"lines":' + lg.droppedLines + ',"chars":' + lg.droppedChars + ',"truncated":' + lg.truncated + '}}';
  }
  function failure(st, code, err) {
    const d = describe(err);
    if (code) d.code = code;
    return envelope(st, false, '"error":' + JSONstringify(d));
  }
  function finish(st, ok, v) {
    if (st.closed) return envelope(st, false, '"error":{"code":"SLUICE_ERR_FUNCTION_RESULT_INVALID","message":"finished twice"}');
    st.closed = true;
    st.log.closed = true;
    if (current === st.log) current = null;
    if (st.fatal !== null) return failure(st, st.fatal.code, st.fatal);
    if (!ok) return failure(st, null, v);
    let s;
    try { s = v === undefined ? 'null' : JSONstringify(v); } catch (e) {
      return failure(st, 'SLUICE_ERR_FUNCTION_RESULT_INVALID', fail('', 'the return value is not JSON data: ' + describe(e).message));
    }
    if (s === undefined) s = 'null';
    if (s.length + st.outBytes > MAX_RESULT) {
      return failure(st, 'SLUICE_ERR_FUNCTION_RESULT_TOO_LARGE', fail('', 'the result is ' + s.length + ' characters; the limit is ' + MAX_RESULT));
    }
    let outs = '';
    for (let i = 0; i < st.outputs.length; i++) outs += (i ? ',' : '') + st.outputs[i];
    return envelope(st, true, '"value":' + s + ',"outputs":[' + outs + ']');
  }

  // The last run: its envelope (once settled) and who waits for it (see run(null)).
  let last = { box: [null], waiter: null };
  return function run(eventsJson, invocationId, deadline) {
    if (eventsJson === null) {
      const cur = last;
      if (cur.box[0] !== null) return PromiseResolve(cur.box[0]);
      return new PromiseCtor((resolve) => { cur.waiter = resolve; });
    }
    // Lines logged by module code (before the first run) count towards the first run.
    const st = { log: initState.closed ? newLogState() : initState, outputs: [], outBytes: 0, fatal: null, closed: false };
    if (!initState.closed) {
      initState = newLogState();
      initState.closed = true;
    }
    current = st.log;
    const log = logger(() => st.log);
    const ctx = ObjectFreeze({
      invocationId, functionName, deadline,
      remainingMs: () => deadline - DateNow(),
      log,
      output: (name, value) => output(st, name, value),
    });
    const cur = { box: [null], waiter: null };
    last = cur;
    let p;
    try {
      p = fn(parseBatch(eventsJson), ctx);
    } catch (e) {
      cur.box[0] = finish(st, false, e);
      return cur.box;
    }
    const settle = (envelope) => {
      cur.box[0] = envelope;
      if (cur.waiter !== null) cur.waiter(envelope);
    };
    ReflectApply(PromiseThen, PromiseResolve(p), [
      (v) => settle(finish(st, true, v)),
      (e) => settle(finish(st, false, e)),
    ]);
    return cur.box;
  };
};
})()`
