// wsiseg view: the folder's slides in OpenSeadragon, with the mask, heat map,
// regions and ground truth as overlays. Everything comes from this server.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  let slides = [];
  let info = null; // the slide open now (api/slide/ID)
  let items = {}; // OpenSeadragon TiledImages by layer
  let regions = [];
  let animating = false;
  let opening = null;
  let pendingRegions = false;
  let booted = false; // the first slide opened (or the list failed)
  // Outlines: the model's regions cyan, the ground truth yellow (the server
  // draws it), both apart from every class colour.
  const REGION_COLOUR = '#00e5ff';
  const viewer = OpenSeadragon({
    element: $('viewer'),
    drawer: 'canvas',
    showNavigationControl: false,
    showNavigator: true,
    navigatorPosition: 'BOTTOM_RIGHT',
    imageSmoothingEnabled: false,
    maxZoomPixelRatio: 16,
    visibilityRatio: 0.3,
    animationTime: 0.5,
    immediateRender: false,
    preserveImageSizeOnResize: true,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    // A slide without a small level answers its coarse tiles 503 until its
    // overview is made: asked again.
    tileRetryMax: 40,
    tileRetryDelay: 3000,
  });
  $('osd-version').textContent = 'OpenSeadragon ' + (OpenSeadragon.version ? OpenSeadragon.version.versionStr : '');

  async function getJSON(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error((await r.text()).trim() || r.status + ' ' + r.statusText);
    return r.json();
  }
  const fmt = (v, d) => (v == null || !isFinite(v) ? '—' : Number(v).toFixed(d));
  const text = (tag, s, cls) => {
    const e = document.createElement(tag);
    e.textContent = s;
    if (cls) e.className = cls;
    return e;
  };
  function message(s) {
    const m = $('message');
    m.textContent = s || '';
    m.hidden = !s;
  }

  // The view as a link: slide, centre (level-0 px), zoom (screen px per
  // slide px) and the layers' opacities.
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const num = (k) => (p.has(k) && isFinite(parseFloat(p.get(k))) ? parseFloat(p.get(k)) : null);
    return { slide: p.get('slide'), x: num('x'), y: num('y'), z: num('z'),
             mask: num('mask'), heat: num('heat'), regions: num('regions'), truth: num('truth') };
  }
  function applyLayerHash(h) {
    const set = (name, v) => {
      if (v == null) return;
      if (v <= 0) { $(name + '-on').checked = false; }
      else { $(name + '-on').checked = true; if ($(name + '-opacity')) $(name + '-opacity').value = Math.min(1, v); }
    };
    set('mask', h.mask); set('heat', h.heat); set('regions', h.regions); set('truth', h.truth);
  }
  function opacity(name) {
    if (!$(name + '-on').checked) return 0;
    const r = $(name + '-opacity');
    return r ? parseFloat(r.value) : 1;
  }
  function centre() {
    const item = items.base;
    if (!item) return null;
    const vp = viewer.viewport;
    const c = item.viewportToImageCoordinates(vp.getCenter(true));
    const z = item.viewportToImageZoom(vp.getZoom(true));
    return { x: c.x, y: c.y, z: z };
  }
  function writeHash() {
    if (!info) return;
    const c = centre();
    const p = new URLSearchParams();
    p.set('slide', info.name);
    if (c) { p.set('x', c.x.toFixed(1)); p.set('y', c.y.toFixed(1)); p.set('z', c.z.toPrecision(4)); }
    p.set('mask', opacity('mask')); p.set('heat', opacity('heat'));
    p.set('regions', opacity('regions')); p.set('truth', opacity('truth'));
    const url = '#' + p.toString();
    if (url !== location.hash) history.replaceState(null, '', url);
    $('link').href = location.href;
  }
  function goTo(h) {
    const item = items.base;
    if (!item) return;
    if (h && h.x != null && h.y != null && h.z != null && h.z > 0) {
      viewer.viewport.zoomTo(item.imageToViewportZoom(h.z), null, true);
      viewer.viewport.panTo(item.imageToViewportCoordinates(h.x, h.y), true);
    } else {
      viewer.viewport.goHome(true);
    }
  }

  function tileSource(l) {
    return {
      width: l.width, height: l.height, tileSize: l.tile, tileOverlap: l.overlap, minLevel: 0,
      getTileUrl: (level, x, y) => l.url + level + '/' + x + '_' + y + '.' + l.format,
    };
  }
  function add(key, source, op) {
    return new Promise((resolve) => {
      viewer.addTiledImage({
        tileSource: source, x: 0, y: 0, width: 1, opacity: op,
        success: (e) => { items[key] = e.item; resolve(e.item); },
        error: (e) => { message('The ' + key + ' layer cannot be shown: ' + (e.message || 'error')); resolve(null); },
      });
    });
  }

  function figures(s) {
    const box = $('figures');
    box.replaceChildren(text('h2', 'Figures'));
    const dl = document.createElement('dl');
    const row = (k, v) => { dl.append(text('dt', k), text('dd', v)); };
    const f = s.figures || {};
    row('tumor', fmt(f.tumor_pct, 2) + ' %');
    row('tumor mm²', fmt(f.tumor_mm2, 3));
    row('regions', f.regions == null ? '—' : String(f.regions));
    row('largest mm²', fmt(f.largest_mm2, 3));
    row('size', s.width ? s.width + ' × ' + s.height + ' px' : '—');
    row('µm/px', fmt(s.mpp, 4));
    if (s.eval) {
      const cls = s.eval.classes || {};
      const first = Object.values(cls)[0] || {};
      row('Dice', fmt(first.dice, 3));
      row('IoU', fmt(first.iou, 3));
      if (s.eval.boundary) row('boundary F', fmt(s.eval.boundary.f_score, 3));
      if (s.eval.lesions) row('lesions found', s.eval.lesions.found + ' / ' + s.eval.lesions.truth_regions);
    }
    box.append(dl);
    if (s.error) box.append(text('p', s.error, 'error'));
  }
  function legend(s) {
    const l = $('legend');
    l.replaceChildren();
    for (const c of s.classes.slice(1)) {
      const sw = document.createElement('i');
      sw.style.background = 'rgb(' + c.colour.join(',') + ')';
      const span = document.createElement('span');
      span.append(sw, c.name);
      l.append(span);
    }
    const outline = (colour, label) => {
      const sw = document.createElement('i');
      sw.style.border = '2px solid ' + colour;
      const span = document.createElement('span');
      span.append(sw, label);
      l.append(span);
    };
    if (s.regions) outline(REGION_COLOUR, 'regions');
    if (s.truth) outline('#ffe600', 'ground truth');
    if ((s.layers && s.layers.heat && !s.layers.heat.error) || s.heatmap_png) {
      const ramp = document.createElement('span');
      ramp.textContent = 'heat: P(tumor) 0.1 ';
      const bar = document.createElement('i');
      bar.className = 'ramp';
      ramp.append(bar, ' 1');
      l.append(ramp);
    }
  }

  async function openSlide(id, h) {
    const token = {};
    opening = token;
    message('');
    const s = await getJSON('api/slide/' + id).catch((e) => ({ error: String(e), id: id, layers: {}, classes: [] }));
    if (opening !== token) return;
    info = s;
    document.querySelectorAll('#slides tr.current').forEach((r) => r.classList.remove('current'));
    const tr = document.querySelector('#slides tr[data-id="' + id + '"]');
    if (tr) { tr.classList.add('current'); tr.scrollIntoView({ block: 'nearest' }); }
    $('title').textContent = s.name || 'slide ' + id;
    $('status').textContent = s.status || '';
    $('status').className = s.status || '';
    $('prev').disabled = id <= 0;
    $('next').disabled = id >= slides.length - 1;
    figures(s);
    legend(s);
    viewer.world.removeAll();
    items = {};
    regions = [];
    pendingRegions = false;
    $('regions').replaceChildren();
    $('region-count').textContent = '';
    const layers = s.layers || {};
    const problems = [];
    for (const [key, l] of Object.entries(layers)) if (l && l.error) problems.push(key + ': ' + l.error);
    if (layers.slide && !layers.slide.error) items.base = await add('slide', tileSource(layers.slide), 1);
    if (opening !== token) return;
    if (layers.heat && !layers.heat.error) await add('heat', tileSource(layers.heat), opacity('heat'));
    else if (s.heatmap_png) await add('heat', { type: 'image', url: s.heatmap_png, buildPyramid: false }, opacity('heat'));
    if (layers.mask && !layers.mask.error) await add('mask', tileSource(layers.mask), opacity('mask'));
    if (s.truth) await add('truth', { type: 'image', url: s.truth, buildPyramid: false }, opacity('truth'));
    if (opening !== token) return;
    if (!items.base) items.base = items.mask || items.heat || null;
    if (problems.length) message('This slide cannot be shown in full — ' + problems.join('; '));
    else if (layers.slide && layers.slide.overview_pending) message('This slide has no small level: its overview is being made, and the zoomed-out views come when it is (zoom in to see it at full resolution now).');
    else if (s.error) message(s.error);
    goTo(h);
    scaleBar();
    writeHash();
    if (s.regions) {
      pendingRegions = true;
      getJSON(s.regions).then((r) => { if (info === s) showRegions(r.regions); })
        .catch((e) => { if (info === s) $('region-count').textContent = '(' + e.message + ')'; })
        .finally(() => { if (info === s) pendingRegions = false; });
    }
    opening = null;
  }

  function showRegions(list) {
    regions = list;
    const ol = $('regions');
    $('region-count').textContent = '(' + list.length + ')';
    list.slice(0, 500).forEach((r, i) => {
      const area = r.area_mm2 != null ? fmt(r.area_mm2, 4) + ' mm²' : Math.round(r.area_px) + ' px²';
      const li = text('li', (r.name || 'region ' + (i + 1)) + ' — ' + area);
      li.dataset.index = i;
      li.addEventListener('click', () => zoomToRegion(r));
      ol.append(li);
    });
    drawShapes();
  }
  function zoomToRegion(r) {
    const item = items.base;
    if (!item) return;
    const [x0, y0, x1, y1] = r.bbox;
    const pad = Math.max(x1 - x0, y1 - y0) * 0.15 + 16;
    viewer.viewport.fitBounds(item.imageToViewportRectangle(x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad));
  }

  // Region outlines on a canvas over the viewer, in slide pixels.
  function drawShapes() {
    const canvas = $('shapes');
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
    if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const item = items.base;
    if (!item || !regions.length || !$('regions-on').checked) return;
    const p0 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const p1 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 1000));
    const s = (p1.x - p0.x) / 1000;
    if (!(s > 0)) return;
    const visible = (b) => b[2] * s + p0.x >= 0 && b[0] * s + p0.x <= w && b[3] * s + p0.y >= 0 && b[1] * s + p0.y <= h;
    ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * p0.x, dpr * p0.y);
    ctx.lineWidth = 2 / s;
    for (const r of regions) {
      if (!r.rings || !visible(r.bbox)) continue;
      ctx.strokeStyle = REGION_COLOUR;
      ctx.beginPath();
      for (const ring of r.rings) {
        ring.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
        ctx.closePath();
      }
      ctx.stroke();
    }
  }

  function scaleBar() {
    const item = items.base;
    const bar = $('scalebar');
    if (!item || !info || !info.mpp) { bar.hidden = true; return; }
    bar.hidden = false;
    const zoom = item.viewportToImageZoom(viewer.viewport.getZoom(true)); // screen px per slide px
    const umPerPx = info.mpp / zoom;
    const raw = 120 * umPerPx;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const nice = [5, 2, 1].map((k) => k * p).find((v) => v <= raw) || p;
    $('scalebar-bar').style.width = Math.round(nice / umPerPx) + 'px';
    $('scalebar-label').textContent = nice >= 1000 ? nice / 1000 + ' mm' : nice + ' µm';
  }

  function setOpacities() {
    if (items.mask) items.mask.setOpacity(opacity('mask'));
    if (items.heat) items.heat.setOpacity(opacity('heat'));
    if (items.truth) items.truth.setOpacity(opacity('truth'));
    drawShapes();
    writeHash();
  }
  for (const name of ['mask', 'heat', 'regions', 'truth']) {
    $(name + '-on').addEventListener('change', setOpacities);
    if ($(name + '-opacity')) $(name + '-opacity').addEventListener('input', () => { $(name + '-on').checked = true; setOpacities(); });
  }
  const step = (d) => {
    if (!info) return;
    const id = info.id + d;
    if (id >= 0 && id < slides.length) openSlide(id, null);
  };
  $('prev').addEventListener('click', () => step(-1));
  $('next').addEventListener('click', () => step(1));
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'INPUT' || e.ctrlKey || e.metaKey || e.altKey)) return;
    const toggle = (name) => { $(name + '-on').checked = !$(name + '-on').checked; setOpacities(); };
    switch (e.key) {
      case 'n': step(1); break;
      case 'p': step(-1); break;
      case 'm': toggle('mask'); break;
      case 'h': toggle('heat'); break;
      case 'r': toggle('regions'); break;
      case 't': toggle('truth'); break;
      case '0': viewer.viewport.goHome(); break;
      default: return;
    }
    e.preventDefault();
  });

  viewer.addHandler('update-viewport', drawShapes);
  viewer.addHandler('animation-start', () => { animating = true; });
  viewer.addHandler('animation-finish', () => { animating = false; scaleBar(); writeHash(); drawShapes(); });
  viewer.addHandler('tile-load-failed', (e) => {
    message('Some tiles could not be loaded' + (e.message ? ': ' + e.message : '') + ' — the slide may be unreadable; the rest keeps working.');
  });
  new OpenSeadragon.MouseTracker({
    element: viewer.container,
    moveHandler: (e) => {
      const item = items.base;
      if (!item) return;
      const p = item.viewerElementToImageCoordinates(e.position);
      const um = info && info.mpp ? ' · ' + fmt(p.x * info.mpp, 1) + ', ' + fmt(p.y * info.mpp, 1) + ' µm' : '';
      $('position').textContent = Math.round(p.x) + ', ' + Math.round(p.y) + ' px' + um;
    },
  });
  window.addEventListener('hashchange', () => {
    const h = readHash();
    if (!info || !h.slide) return;
    applyLayerHash(h);
    const id = slides.findIndex((s) => s.name === h.slide);
    if (id >= 0 && id !== info.id) openSlide(id, h);
    else { setOpacities(); goTo(h); }
  });

  // For tests and scripts: whether every layer is drawn, and where the
  // slide's pixels are on screen.
  window.wsisegView = {
    ready: () => booted && !opening && !animating && !pendingRegions && Object.values(items).every((i) => !i || i.getOpacity() === 0 || i.getFullyLoaded()),
    current: () => (info ? { id: info.id, name: info.name } : null),
    state: () => ({ opening: !!opening, animating: animating,
      loaded: Object.fromEntries(Object.entries(items).map(([k, i]) => [k, i ? i.getFullyLoaded() : null])) }),
    centre: centre,
    transform: () => {
      const item = items.base;
      if (!item) return null;
      const p0 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
      const p1 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 1000));
      const r = viewer.container.getBoundingClientRect();
      return { x0: p0.x + r.left, y0: p0.y + r.top, scale: (p1.x - p0.x) / 1000 };
    },
  };

  async function start() {
    let list;
    try {
      list = await getJSON('api/slides');
    } catch (e) {
      message('The server did not answer: ' + e.message);
      booted = true;
      return;
    }
    slides = list.slides;
    $('folder').textContent = list.folder;
    document.title = 'wsiseg view — ' + list.folder;
    const body = document.querySelector('#slides tbody');
    for (const s of slides) {
      const tr = document.createElement('tr');
      tr.dataset.id = s.id;
      tr.dataset.status = s.status;
      const f = s.figures || {};
      tr.append(text('td', s.name), text('td', s.status), text('td', fmt(f.tumor_pct, 1), 'num'),
        text('td', f.regions == null ? '—' : String(f.regions), 'num'), text('td', fmt(f.dice, 3), 'num'));
      if (s.error) tr.title = s.error;
      tr.addEventListener('click', () => openSlide(s.id, null));
      body.append(tr);
    }
    const h = readHash();
    applyLayerHash(h);
    let id = slides.findIndex((s) => s.name === h.slide);
    if (id < 0) id = 0;
    await openSlide(id, id === slides.findIndex((s) => s.name === h.slide) ? h : null);
    booted = true;
  }
  start();
})();
