// wsedge console: plain JavaScript, no build step, nothing from other origins.
// The wire contract it speaks is docs/PROTOCOL.md.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const LOG_MAX = 500;       // frame log entries kept; older ones are dropped
  const HISTORY_MAX = 50;    // reconnect history rows kept
  const BACKOFF_BASE = 500;  // ms; reconnects without a server hint back off exponentially
  const BACKOFF_MAX = 30000;
  const RTT_EVERY = 15000;   // ms between round-trip probes on a session socket
  // Close codes after which reconnecting would only repeat the failure.
  const FINAL = new Set([1000, 1002, 1003, 1007, 1008, 1009, 4001]);
  const enc = new TextEncoder();

  let ws = null;
  let wantOpen = false;
  let attempts = 0;
  let hint = null;        // after_ms of the last reconnect frame
  let retryTimer = null;
  let rttTimer = null;
  let helloSent = false;
  let probeSeq = 0;
  const probes = new Map(); // probe id -> send time
  let turn = null;          // the chat turn being streamed
  let counts = { in: 0, out: 0 };

  function setState(s) {
    $('state').textContent = s;
    $('state').dataset.state = s;
    $('connect').disabled = s === 'open' || s === 'connecting';
    $('disconnect').disabled = s === 'closed';
  }

  function now() {
    const d = new Date();
    return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function pretty(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (e) {
      return text;
    }
  }

  function log(dir, text, type) {
    const row = document.createElement('div');
    row.className = 'entry';
    row.dataset.dir = dir;
    row.dataset.type = type || '';
    const cells = [now(), dir === 'in' ? '↓' : dir === 'out' ? '↑' : '•',
      dir === 'sys' ? '' : enc.encode(text).length + ' B'];
    for (const [i, c] of cells.entries()) {
      const span = document.createElement('span');
      span.className = ['time', 'dir', 'size'][i];
      span.textContent = c;
      row.appendChild(span);
    }
    const pre = document.createElement('pre');
    pre.textContent = dir === 'sys' ? text : pretty(text);
    row.appendChild(pre);
    const box = $('log');
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.appendChild(row);
    while (box.childElementCount > LOG_MAX) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function history(event, detail) {
    const tr = document.createElement('tr');
    tr.dataset.event = event;
    for (const c of [now(), event, detail || '']) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.appendChild(td);
    }
    const body = $('history').tBodies[0];
    body.prepend(tr);
    while (body.rows.length > HISTORY_MAX) body.lastElementChild.remove();
  }

  function url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const path = $('route').value === 'chat'
      ? '/ws/chat/'
      : '/ws/session/' + encodeURIComponent($('session-id').value.trim()) + '/';
    const q = $('query').value.trim().replace(/^\?/, '');
    return proto + '//' + location.host + path + (q ? '?' + q : '');
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      log('sys', 'not connected');
      return false;
    }
    const text = typeof obj === 'string' ? obj : JSON.stringify(obj);
    ws.send(text);
    counts.out++;
    $('count-out').textContent = counts.out;
    let type = '';
    try { type = JSON.parse(text).type || ''; } catch (e) { /* raw text */ }
    log('out', text, type);
    return true;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    wantOpen = true;
    const u = url();
    setState('connecting');
    history('connecting', u.replace(/authorization=[^&]*/i, 'authorization=…'));
    let sock;
    try {
      sock = new WebSocket(u);
    } catch (e) {
      history('error', String(e));
      setState('closed');
      wantOpen = false;
      return;
    }
    ws = sock;
    helloSent = false;
    sock.binaryType = 'arraybuffer';
    sock.onopen = () => {
      if (ws !== sock) return;
      attempts = 0;
      setState('open');
      history('open', u.split('?')[0]);
      if ($('route').value === 'session' && $('auto-hello').checked) sendHello();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      counts.in++;
      $('count-in').textContent = counts.in;
      if (typeof ev.data !== 'string') {
        log('in', '(binary, ' + ev.data.byteLength + ' bytes)', 'binary');
        return;
      }
      let m = null;
      try { m = JSON.parse(ev.data); } catch (e) { /* logged as text */ }
      log('in', ev.data, m && m.type);
      if (m && typeof m === 'object') onFrame(m);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      clearInterval(rttTimer);
      probes.clear();
      history('closed', 'code ' + ev.code + (ev.reason ? ' "' + ev.reason + '"' : ''));
      if (turn && turn.el.dataset.state !== 'done') finishTurn('error', 'socket closed');
      if (!wantOpen || !$('auto-reconnect').checked || FINAL.has(ev.code)) {
        wantOpen = false;
        hint = null;
        setState('closed');
        return;
      }
      // The server's after_ms is already jittered across its clients; without
      // one, back off exponentially with full jitter so that clients dropped
      // together do not come back together.
      const delay = hint !== null ? hint : Math.random() * Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempts);
      hint = null;
      attempts++;
      setState('waiting');
      history('retry', 'in ' + Math.round(delay) + ' ms (attempt ' + attempts + ')');
      retryTimer = setTimeout(connect, delay);
    };
  }

  function disconnect() {
    wantOpen = false;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (ws) ws.close(1000, 'console');
    else setState('closed');
  }

  function sendHello() {
    const hello = { type: 'hello', user_type: $('user-type').value.trim() };
    const ct = $('client-type').value.trim();
    if (ct) hello.client_type = ct;
    if (send(hello)) {
      helloSent = true;
      probe();
      clearInterval(rttTimer);
      rttTimer = setInterval(probe, RTT_EVERY);
    }
  }

  // probe measures the round trip with a frame the server echoes: any object
  // with an unknown type comes back as {"type":"echo","data":…} after hello.
  function probe() {
    if (!helloSent || !ws || ws.readyState !== WebSocket.OPEN) return;
    const id = ++probeSeq;
    probes.set(id, performance.now());
    send({ type: 'console.rtt', id: id });
  }

  function showRTT(ms) {
    $('rtt').textContent = ms.toFixed(1) + ' ms';
    $('rtt').dataset.ms = ms.toFixed(3);
  }

  function onFrame(m) {
    switch (m.type) {
      case 'echo':
        if (m.data && m.data.type === 'console.rtt' && probes.has(m.data.id)) {
          showRTT(performance.now() - probes.get(m.data.id));
          probes.delete(m.data.id);
        }
        break;
      case 'presence':
        renderPresence(m);
        break;
      case 'reconnect':
        hint = Math.max(0, Number(m.after_ms) || 0);
        history('reconnect hint', 'after_ms ' + hint);
        break;
      case 'session_started':
        if (turn) {
          turn.started = true;
          turn.el.dataset.state = 'streaming';
          showRTT(performance.now() - turn.sentAt);
          turn.meta.textContent = 'thread ' + m.thread_id;
          $('chat-thread').value = m.thread_id;
        }
        break;
      case 'token':
        if (turn) {
          turn.answer.textContent += m.content;
          turn.tokens++;
          turn.el.dataset.tokens = turn.tokens;
          const box = $('chat-log');
          box.scrollTop = box.scrollHeight;
        }
        break;
      case 'escalation':
        if (turn) turn.escalated = true;
        break;
      case 'end':
        if (turn) finishTurn(turn.cancelled ? 'cancelled' : turn.failed ? 'error' : 'done');
        break;
      case 'error':
        if (turn) {
          turn.failed = m.error;
          // A refused turn gets one error frame and no end.
          if (!turn.started) finishTurn('error', m.error);
        }
        break;
    }
  }

  function renderPresence(m) {
    $('presence-summary').textContent = '(' + m.count + ': ' +
      Object.entries(m.by_type || {}).map(([k, v]) => k + ' ' + v).join(', ') + ')';
    const body = $('presence-table').tBodies[0];
    body.replaceChildren();
    const t = (s) => (s ? new Date(s * 1000).toLocaleTimeString() : '');
    for (const mem of m.members || []) {
      const tr = document.createElement('tr');
      for (const c of [mem.connection_id, mem.user_type, mem.client_type, t(mem.connected_at), t(mem.last_seen)]) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function startTurn() {
    if ($('route').value !== 'chat') {
      log('sys', 'chat turns need the chat route: choose it and connect');
      return;
    }
    if (turn && !turn.over) {
      log('sys', 'a turn is still streaming');
      return;
    }
    const frame = { type: 'chat', message: $('chat-message').value };
    const thread = $('chat-thread').value.trim();
    const channel = $('chat-channel').value.trim();
    if (thread) frame.thread_id = thread;
    if (channel) frame.channel = channel;
    if (channel === 'web') frame.data = [];
    const el = document.createElement('div');
    el.className = 'turn';
    el.dataset.state = 'waiting';
    el.dataset.tokens = '0';
    const user = document.createElement('div');
    user.className = 'user';
    user.textContent = frame.message;
    const answer = document.createElement('div');
    answer.className = 'answer';
    const meta = document.createElement('div');
    meta.className = 'meta';
    el.append(user, answer, meta);
    turn = { el, answer, meta, tokens: 0, sentAt: performance.now(), started: false, over: false };
    if (!send(frame)) {
      turn = null;
      return;
    }
    $('chat-log').appendChild(el);
    $('chat-cancel').disabled = false;
  }

  function finishTurn(state, why) {
    turn.over = true;
    turn.el.dataset.state = state;
    turn.meta.textContent += (turn.meta.textContent ? ' · ' : '') + state +
      (why ? ' (' + why + ')' : '') + ' · ' + turn.tokens + ' tokens' + (turn.escalated ? ' · escalated' : '');
    $('chat-cancel').disabled = true;
  }

  function jsonOr(text) {
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  document.addEventListener('DOMContentLoaded', () => {
    const syncRoute = () => {
      const chat = $('route').value === 'chat';
      $('session-field').hidden = chat;
      $('session-panel').hidden = chat;
      $('chat-panel').hidden = !chat;
    };
    const params = new URLSearchParams(location.search);
    if (params.get('route')) $('route').value = params.get('route');
    if (params.get('session')) $('session-id').value = params.get('session');
    syncRoute();
    $('route').addEventListener('change', syncRoute);
    $('connect-form').addEventListener('submit', (e) => { e.preventDefault(); connect(); });
    $('disconnect').addEventListener('click', disconnect);
    $('hello-form').addEventListener('submit', (e) => { e.preventDefault(); sendHello(); });
    $('broadcast-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const frame = { type: 'broadcast', msg: jsonOr($('broadcast-msg').value) };
      const data = $('broadcast-data').value.trim();
      if (data) frame.data = jsonOr(data);
      send(frame);
    });
    $('presence').addEventListener('click', () => send({ type: 'presence' }));
    $('ping').addEventListener('click', probe);
    $('chat-form').addEventListener('submit', (e) => { e.preventDefault(); startTurn(); });
    $('chat-cancel').addEventListener('click', () => {
      if (turn && !turn.over && send({ type: 'cancel' })) turn.cancelled = true;
    });
    $('raw-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = $('raw').value;
      if (text) send(text);
    });
    $('log-clear').addEventListener('click', () => $('log').replaceChildren());
    // Leaving the page closes the socket at once, so that presence does not
    // keep a member whose page is gone (or parked in the back/forward cache).
    window.addEventListener('pagehide', () => {
      wantOpen = false;
      clearTimeout(retryTimer);
      if (ws) ws.close(1000, 'page closed');
    });
    setState('closed');
  });
})();
