// seglb dashboard: signs in with an admin token (kept in sessionStorage, sent as a bearer header),
// follows the live stream (/events/stream, opened with a short-lived ticket because EventSource
// cannot send headers) and polls the overview. Everything is written with textContent: no data
// from the API is ever parsed as HTML.
'use strict';

const TOKEN_KEY = 'seglb.token';
const FEED_MAX = 200;
const OVERVIEW_MS = 2000;
const AGGREGATES_MS = 3000;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: null,
  name: null,
  stream: null,
  timers: [],
  segments: new Map(),
  seenFlows: new Set(),
  seenAlerts: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) {
    signOut('The token was refused.');
    throw new Error('unauthorized');
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data?.error?.message || `HTTP ${res.status}`);
  return data;
}

// ---- sign in / out -------------------------------------------------------------------------------

function showLogin(message) {
  $('login').hidden = false;
  $('main').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login-error').textContent = message || '';
  $('token').focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  if (state.stream) state.stream.close();
  state.stream = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  setLive(false);
  showLogin(message);
}

async function start() {
  let ticket;
  try {
    ticket = await api('POST', '/events/ticket');
  } catch (err) {
    if (state.token) showLogin(`Sign-in failed: ${err.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  state.role = ticket.token.role;
  state.name = ticket.token.name;
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = false;
  $('who').textContent = `${state.name} (${state.role})`;
  openStream(ticket.ticket);
  await Promise.allSettled([loadHistory(), refreshOverview(), refreshMatrix()]);
  state.timers.push(setInterval(refreshOverview, OVERVIEW_MS), setInterval(refreshMatrix, AGGREGATES_MS));
}

// ---- live stream -----------------------------------------------------------------------------------

function setLive(on) {
  const l = $('live');
  l.className = `live ${on ? 'on' : 'off'}`;
  l.textContent = on ? 'live' : 'offline';
}

function openStream(ticket) {
  if (state.stream) state.stream.close();
  const es = new EventSource(`/events/stream?ticket=${encodeURIComponent(ticket)}`);
  state.stream = es;
  es.addEventListener('open', () => setLive(true));
  es.addEventListener('stats', (e) => renderRates(JSON.parse(e.data)));
  es.addEventListener('flow', (e) => addFlow(JSON.parse(e.data)));
  es.addEventListener('alert', (e) => addAlert(JSON.parse(e.data)));
  es.addEventListener('error', () => {
    setLive(false);
    // A ticket is good for 30 s: once the browser gives up, fetch a new one and reconnect.
    if (es.readyState === EventSource.CLOSED && state.token) {
      setTimeout(async () => {
        if (state.stream !== es || !state.token) return;
        try {
          const t = await api('POST', '/events/ticket');
          openStream(t.ticket);
        } catch {
          setTimeout(() => es.dispatchEvent(new Event('error')), 3000);
        }
      }, 1000);
    }
  });
}

async function loadHistory() {
  const [flows, events] = await Promise.all([
    api('GET', '/flows?limit=50&verdict=deny'),
    api('GET', '/events?limit=50'),
  ]);
  const items = [
    ...flows.flows.map((f) => ({ at: Date.parse(f.time), f })),
    ...events.events.map((a) => ({ at: Date.parse(a.time), a })),
  ].sort((x, y) => x.at - y.at);
  for (const i of items) (i.f ? addFlow(i.f) : addAlert(i.a));
}

function pushFeed(li) {
  const feed = $('feed');
  feed.prepend(li);
  while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

function addFlow(f) {
  if (state.seenFlows.has(f.seq)) return;
  state.seenFlows.add(f.seq);
  const what = f.kind === 'req' ? `request ${f.status || ''}` : 'connection';
  pushFeed(
    el(
      'li',
      { class: `flow ${f.verdict}`, 'data-source': f.source, 'data-segment': f.segment },
      el('time', { text: clock(f.time) }),
      el('span', { class: 'tag', text: f.verdict }),
      el('span', { text: `${f.source} → ${f.segment} (${f.vip})` }),
      el('span', { class: 'muted', text: `${what}, rule ${f.rule}` }),
    ),
  );
}

function addAlert(a) {
  if (state.seenAlerts.has(a.id)) return;
  state.seenAlerts.add(a.id);
  const act = a.action === 'quarantine' ? (a.dryRun ? ' [dry run: would quarantine]' : ' [quarantined]') : '';
  pushFeed(
    el(
      'li',
      { class: 'alert', 'data-detector': a.detector },
      el('time', { text: clock(a.time) }),
      el('span', { class: 'tag', text: a.detector }),
      el('span', { text: `${a.message}${act}` }),
    ),
  );
  if (a.action === 'quarantine' && !a.dryRun) refreshOverview();
}

// ---- segments ----------------------------------------------------------------------------------------

function fmt(n) {
  return n >= 100 ? Math.round(n).toString() : n.toFixed(1);
}

function renderRates(stats) {
  for (const s of stats.segments) {
    const seg = state.segments.get(s.name) || { name: s.name };
    seg.rates = s.rates;
    seg.totals = s.totals;
    state.segments.set(s.name, seg);
  }
  renderSegments();
}

function renderSegments() {
  const box = $('segments');
  box.replaceChildren();
  for (const seg of state.segments.values()) {
    const r = seg.rates || { allow: 0, deny: 0, audit: 0 };
    const sum = r.allow + r.deny + r.audit || 1;
    const bar = el('div', { class: 'bar' });
    for (const k of ['allow', 'deny', 'audit']) {
      const span = el('span', { class: k });
      span.style.width = `${(100 * r[k]) / sum}%`;
      bar.append(span);
    }
    const rate = (k) => el('div', { class: `rate ${k}` }, el('b', { text: fmt(r[k] || 0) }), el('span', { class: 'muted', text: k }));
    const t = seg.totals || { allow: 0, deny: 0, audit: 0 };
    box.append(
      el(
        'div',
        { class: 'card', 'data-segment': seg.name },
        el('h3', {}, el('span', { text: seg.name }), seg.mode ? el('span', { class: `badge ${seg.mode}`, text: seg.mode }) : null),
        el('div', { class: 'vips', text: (seg.vips || []).join('  ') }),
        el('div', { class: 'rates' }, rate('allow'), rate('deny'), rate('audit')),
        bar,
        el('div', { class: 'muted small', text: `total: ${t.allow} allowed, ${t.deny} denied, ${t.audit} audit` }),
      ),
    );
  }
}

// ---- overview: quarantine, pools, cluster -----------------------------------------------------------

async function refreshOverview() {
  let o;
  try {
    o = await api('GET', '/observe/overview');
  } catch {
    return;
  }
  $('policy').textContent = `v${o.version} · policy ${o.policy.version} (${o.policy.hash})`;
  for (const s of o.segments) {
    const seg = state.segments.get(s.name) || { name: s.name, rates: s.rates, totals: s.totals };
    seg.mode = s.mode;
    seg.vips = s.vips;
    state.segments.set(s.name, seg);
  }
  renderSegments();
  renderQuarantine(o.quarantine);
  renderPools(o.pools);
  renderCluster(o.cluster);
}

function renderQuarantine(entries) {
  const body = $('quarantine');
  body.replaceChildren();
  $('qcount').textContent = `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`;
  const canRemove = state.role === 'operate' || state.role === 'admin';
  if (entries.length === 0) body.append(el('tr', {}, el('td', { colspan: 4, class: 'muted', text: 'empty' })));
  for (const e of entries) {
    const left = e.expiresAt ? Math.max(0, Math.round((Date.parse(e.expiresAt) - Date.now()) / 1000)) : null;
    const button = canRemove
      ? el('button', {
          class: 'danger',
          type: 'button',
          'data-remove': e.cidr,
          text: 'Remove',
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              await api('DELETE', `/quarantine/${encodeURIComponent(e.cidr)}`);
            } catch (err) {
              alert(`Could not remove ${e.cidr}: ${err.message}`);
            }
            refreshOverview();
          },
        })
      : null;
    body.append(
      el(
        'tr',
        { 'data-cidr': e.cidr },
        el('td', {}, el('code', { text: e.cidr })),
        el('td', { class: 'muted reason', text: e.reason, title: e.reason }),
        el('td', { text: left === null ? 'never' : `in ${left} s` }),
        el('td', {}, button),
      ),
    );
  }
}

function renderPools(pools) {
  const body = $('pools');
  body.replaceChildren();
  for (const p of pools) {
    p.backends.forEach((b, i) => {
      const health = b.ejected ? ['ejected', 'bad'] : b.healthy === false ? ['unhealthy', 'bad'] : b.healthy ? ['healthy', 'ok'] : b.usable ? ['usable', 'ok'] : ['not usable', 'bad'];
      body.append(
        el(
          'tr',
          {},
          el('td', { text: i === 0 ? `${p.name} (${p.algorithm})` : '' }),
          el('td', { text: `${b.name}`, title: b.address }),
          el('td', { class: b.state === 'ready' ? '' : 'warn', text: b.state }),
          el('td', { class: health[1], text: health[0] }),
          el('td', { text: String(b.inflight) }),
          el('td', { text: String(b.served) }),
          el('td', { text: String(b.failures) }),
        ),
      );
    });
  }
}

function renderCluster(peers) {
  const box = $('cluster');
  box.replaceChildren();
  if (!peers) {
    box.textContent = 'single node (no cluster configured)';
    return;
  }
  const table = el('table', { class: 'list' }, el('tr', {}, el('th', { text: 'Peer' }), el('th', { text: 'State' }), el('th', { text: 'Sync lag' })));
  for (const p of peers) {
    table.append(
      el(
        'tr',
        {},
        el('td', { text: `${p.name} (${p.address})` }),
        el('td', { class: p.state === 'alive' || p.state === 'up' ? 'ok' : 'bad', text: p.state }),
        el('td', { text: p.syncLagMs === null ? '—' : `${p.syncLagMs} ms` }),
      ),
    );
  }
  box.append(table);
}

// ---- matrix: source groups x segments ----------------------------------------------------------------

async function refreshMatrix() {
  let data;
  try {
    data = await api('GET', '/aggregates?limit=50');
  } catch {
    return;
  }
  const segments = data.segments.map((s) => s.segment).sort();
  const groups = new Map();
  for (const s of data.segments) {
    for (const g of s.groups) {
      const row = groups.get(g.group) || { group: g.group, total: 0, cells: new Map() };
      row.total += g.allow + g.deny + g.audit;
      row.cells.set(s.segment, g);
      groups.set(g.group, row);
    }
  }
  const rows = [...groups.values()].sort((a, b) => b.total - a.total).slice(0, 20);
  const table = $('matrix');
  table.replaceChildren();
  table.append(el('tr', {}, el('th', { text: 'source group' }), ...segments.map((s) => el('th', { text: s }))));
  if (rows.length === 0) table.append(el('tr', {}, el('td', { class: 'muted', text: 'no traffic yet' })));
  for (const row of rows) {
    const tr = el('tr', {}, el('td', {}, el('code', { text: row.group })));
    for (const s of segments) {
      const g = row.cells.get(s);
      if (!g) {
        tr.append(el('td', { class: 'cell muted', text: '·' }));
        continue;
      }
      const denied = g.deny + g.audit;
      const cls = g.allow > 0 && denied > 0 ? 'm' : denied > 0 ? 'd' : 'a';
      tr.append(
        el('td', { class: `cell ${cls}`, title: `${g.allow} allowed, ${g.deny} denied, ${g.audit} audit`, text: `${g.allow} / ${denied}` }),
      );
    }
    table.append(tr);
  }
}

// ---- boot -------------------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.token = $('token').value.trim();
    $('token').value = '';
    start();
  });
  $('logout').addEventListener('click', () => signOut());
  if (state.token) start();
  else showLogin();
});
