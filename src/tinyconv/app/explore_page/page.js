// tinyconv explore: the page's script, inlined into page.html when the page is written.
//
// Every number comes from Python (tinyconv.app.explore), embedded below the
// page as float32 base64 text. This script draws them and, when a value is
// clicked, writes out the tutorial's formula with the real numbers. It may
// multiply and add embedded numbers to show a formula's terms, but the result
// it reports is always the embedded value.
//
// The contract that tests and users' scripts rely on: every clickable value is
// an element with data-layer (a layer index as in `tinyconv summary`, or
// "input"/"output"), data-pass ("forward", "backward", "weight" or "bias") and
// data-channel/data-y/data-x for a map, data-index for a vector or a weight
// (its position in the flattened array). Clicking one fills #detail, whose
// text ends with the value to 9 significant digits. #image and #target are
// the selects.
'use strict';
(function () {
  const started = performance.now();

  // ------------------------------------------------------------ the numbers

  function bytesFrom(text) {
    const binary = atob(text.trim());
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }
  const byId = (id) => document.getElementById(id);
  const DATA = JSON.parse(byId('explore-data').textContent);
  const FLOAT_BYTES = bytesFrom(byId('explore-floats').textContent);
  // float32, little-endian as written (every current browser runs little-endian).
  const FLOATS = new Float32Array(FLOAT_BYTES.buffer, 0, FLOAT_BYTES.length >> 2);
  const MASKS = bytesFrom(byId('explore-masks').textContent);
  const decoded = performance.now();

  const L = DATA.layers.length;
  const CLASSES = DATA.classes;
  const CAPS = DATA.caps;
  const product = (shape) => shape.reduce((a, b) => a * b, 1);

  // A reference from Python: {s: shape, d: offset} (whole), plus m: bit offset
  // (the values where the mask is set, zeros elsewhere), or {s, outer: [a, b]}
  // (a fully connected layer's δ aᵀ: each product rounded to float32, which is
  // what storing into a Float32Array does, the same number NumPy's float32
  // product gives).
  const arrays = new Map();
  function read(ref) {
    if (!ref) return null;
    if (arrays.has(ref)) return arrays.get(ref);
    const size = product(ref.s);
    let data;
    if (ref.outer) {
      const a = read(ref.outer[0]).data, b = read(ref.outer[1]).data;
      const [rows, cols] = ref.s;
      data = new Float32Array(size);
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[i * cols + j] = a[i] * b[j];
    } else if (ref.m !== undefined) {
      data = new Float32Array(size);
      let k = ref.d;
      for (let i = 0; i < size; i++) {
        const bit = ref.m + i;
        if ((MASKS[bit >> 3] >> (bit & 7)) & 1) data[i] = FLOATS[k++];
      }
    } else {
      data = FLOATS.subarray(ref.d, ref.d + size);
    }
    const array = { shape: ref.s, data };
    arrays.set(ref, array);
    return array;
  }

  // The value of a (C, H, W) or (n,) array at {c, y, x} or {i}; undefined
  // where the page does not hold it (beyond a cap).
  function at(array, pos) {
    if (!array) return undefined;
    const s = array.shape;
    if (s.length === 3) {
      if (pos.c >= s[0]) return undefined;
      return array.data[(pos.c * s[1] + pos.y) * s[2] + pos.x];
    }
    return pos.i < s[0] ? array.data[pos.i] : undefined;
  }
  const maxAbs = (data) => { let m = 0; for (const v of data) { const a = Math.abs(v); if (a > m) m = a; } return m; };

  // ------------------------------------------------------------ formatting

  const full = (v) => (v === undefined ? 'not in the page' : Number(v).toPrecision(9));
  function short(v) {
    if (v === undefined) return '?';
    if (v === 0) return '0';
    if (!Number.isFinite(v)) return String(v).replace('Infinity', '∞');
    const a = Math.abs(v);
    return a >= 1e-4 && a < 1e6 ? String(Number(v.toPrecision(5))) : v.toExponential(4);
  }
  const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
  const sub = (text) => `<sub>${text}</sub>`;
  const shapeText = (shape) => shape.join('×');
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  // "Channel 3 is" or "Channels 3…5 are": the part of a sum beyond a cap.
  const beyond = (word, first, last) => (first === last ? `${word} ${first} is` : `${word}s ${first}…${last} are`);

  // ------------------------------------------------------------ stages

  // The columns of the overview: the input, each layer, and the output.
  const STAGES = ['input', ...DATA.layers.map((layer) => String(layer.index)), 'output'];
  function stage(key) {
    if (key === 'input') return { key, title: 'input', shape: DATA.input.shape, shown: DATA.input.shown };
    if (key === 'output') return { key, title: 'output: softmax', shape: [CLASSES.length], shown: CLASSES.length };
    const layer = DATA.layers[+key];
    return { key, title: `${layer.index}: ${layer.kind}`, shape: layer.out_shape, shown: layer.shown, layer };
  }
  const prevKey = (key) => (key === '0' ? 'input' : String(+key - 1));
  const nextKey = (key) => (key === 'input' ? '0' : +key + 1 < L ? String(+key + 1) : null);
  const isMaps = (shape) => shape.length === 3;
  const ACTIVATIONS = ['ReLU', 'Sigmoid', 'Tanh'];
  const EQUATIONS = {
    Conv2d: 'size eq. 4.2/4.3 · forward eq. 4.4 (4.1) · δ back eq. 5.3 · ∂E/∂w = Σ δ·a',
    MaxPool2d: 'size eq. 4.2/4.3 · max of each window · δ to the maximum',
    AvgPool2d: 'size eq. 4.2/4.3 · mean of each window · δ ⊗ (1/n²) shares',
    Linear: 'net = W·a + b · δ = Wᵀδ · ∂E/∂W = δaᵀ',
    ReLU: 'a = max(0, net) · δ ∘ f′(net), eq. 5.1/5.2',
    Sigmoid: 'a = 1/(1+e^−net) · δ ∘ f′(net), eq. 5.1/5.2',
    Tanh: 'a = tanh(net) · δ ∘ f′(net), eq. 5.1/5.2',
    BatchNorm2d: 'γ(x − μ)/√(σ² + ε) + β, stored statistics',
    BatchNorm1d: 'γ(x − μ)/√(σ² + ε) + β, stored statistics',
    Flatten: 'reorders maps into a vector',
    Dropout: 'evaluation: passes values through',
    Identity: 'passes values through',
  };

  const state = { image: 0, target: 0, selected: null, units: {} };
  const image = () => DATA.images[state.image];
  const backward = () => image().backward[String(state.target)] || null;
  function forwardOf(key) {
    if (key === 'input') return read(image().input);
    if (key === 'output') return read(image().probabilities);
    return read(image().outputs[+key]);
  }
  function backwardOf(key) {
    const b = backward();
    if (!b) return null;
    if (key === 'input') return read(b.input);
    return read(b.deltas[key === 'output' ? L - 1 : +key]);
  }
  const gradOf = (l, which) => { const b = backward(); return b ? read(b.grads[String(l)][which]) : null; };
  const defaultTarget = (img) => (img.label !== null && img.label !== undefined ? img.label : img.predicted);

  // ------------------------------------------------------------ drawing

  // Diverging colours: blue below 0, white at 0, red above; t in [-1, 1].
  function colour(t) {
    if (!(t === t)) return [255, 0, 255];
    t = Math.max(-1, Math.min(1, t));
    return t >= 0 ? [255 - 35 * t, 255 - 205 * t, 255 - 225 * t] : [255 + 215 * t, 255 + 165 * t, 255 + 35 * t];
  }
  function paint(canvas, count, value) {
    const context = canvas.getContext('2d');
    const picture = context.createImageData(canvas.width, canvas.height);
    for (let i = 0; i < count; i++) {
      const rgb = value(i);
      picture.data[4 * i] = rgb[0]; picture.data[4 * i + 1] = rgb[1];
      picture.data[4 * i + 2] = rgb[2]; picture.data[4 * i + 3] = 255;
    }
    context.putImageData(picture, 0, 0);
  }
  function paintValues(canvas, data, offset, count, scale) {
    paint(canvas, count, (i) => colour(data[offset + i] / scale));
  }

  // A grid of rows × cols values: a canvas, and optionally one clickable <i>
  // per value on top of it; cell(r, c) gives a cell's attributes. With
  // `later`, the cells are left for fillCells (below) and their container
  // stays empty until then.
  const laterCells = [];
  function gridHtml(rows, cols, z, cell, title, later) {
    let cells = '';
    if (cell) {
      const fill = () => {
        let html = '';
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) html += `<i ${cell(r, c)}></i>`;
        return html;
      };
      if (later) laterCells.push(fill);
      cells = `<div class="cells">${later ? '' : fill()}</div>`;
    }
    return `<div class="map" style="--r:${rows};--c:${cols};--z:${z}"${title ? ` title="${esc(title)}"` : ''}>` +
      `<canvas width="${cols}" height="${rows}"></canvas>${cells}</div>`;
  }
  const mapZoom = (h, w) => Math.max(3, Math.min(16, Math.round(112 / Math.max(h, w))));
  const vectorCols = (n) => (n <= 32 ? 1 : Math.min(40, Math.ceil(Math.sqrt(n))));
  const vectorZoom = (n, cols) => (n <= 32 ? 12 : Math.max(4, Math.min(12, Math.round(160 / cols))));

  // ------------------------------------------------------------ the overview

  const blocks = {};   // blocks[key][pass]: the element, its grids and how keys move in it
  function blockHtml(key, pass) {
    const st = stage(key);
    const heading = pass === 'forward' ? (key === 'output' ? 'p (probabilities)' : key === 'input' ? 'x (normalised pixels)' : 'a (output)')
      : (key === 'output' ? '∂E/∂z (logits)' : 'δ = ∂E/∂' + (key === 'input' ? 'x' : 'a'));
    const label = `${st.title}, ${pass === 'forward' ? 'forward values' : 'sensitivity map δ'}`;
    let body = '', size = '';
    let first = true;
    const tab = () => (first ? ((first = false), ' tabindex="0"') : '');
    if (key === 'output') {
      body = '<div class="bars">' + CLASSES.map((name, k) =>
        `<span class="barlabel">${k} ${esc(name)} <span class="barvalue"></span></span>` +
        `<span class="bar" role="button" aria-label="${esc(name)}" data-layer="output" data-pass="${pass}" data-index="${k}"${tab()}><span></span></span>`).join('') + '</div>';
    } else if (isMaps(st.shape)) {
      const [, h, w] = st.shape;
      const z = mapZoom(h, w);
      const maps = [];
      for (let c = 0; c < st.shown; c++) {
        const pre = `data-layer="${key}" data-pass="${pass}" data-channel="${c}" data-y="`;
        maps.push(gridHtml(h, w, z, (y, x) => `${pre}${y}" data-x="${x}"${tab()}`, `channel ${c}`, true));
      }
      body = `<div class="maps">${maps.join('')}</div>`;
      size = `--bw:${w * z};--bh:${st.shown * h * z};--extra:${3 * (st.shown - 1) + 30}`;
    } else {
      const n = st.shown, cols = vectorCols(n), rows = Math.ceil(n / cols);
      const z = vectorZoom(n, cols);
      body = gridHtml(rows, cols, z, (r, c) => {
        const i = r * cols + c;
        return i < n ? `data-layer="${key}" data-pass="${pass}" data-index="${i}"${tab()}` : 'class="none"';
      }, '', true);
      size = `--bw:${cols * z};--bh:${rows * z};--extra:30`;
    }
    // A block of maps or vectors is laid out only near the screen; `size` is its
    // size until then (see .block.far in the style sheet).
    return `<div class="block${size ? ' far' : ''}" role="group" aria-label="${esc(label)}" data-block="${key}:${pass}"` +
      `${size ? ` style="${size}"` : ''}><h4>${heading}</h4>${body}</div>`;
  }

  function stageHtml(key) {
    const st = stage(key);
    const lines = [];
    if (st.layer) {
      lines.push(`${shapeText(st.layer.in_shape)} → ${shapeText(st.shape)}`);
      lines.push(`${st.layer.params.toLocaleString('en')} parameters`);
      lines.push(`<span class="eqs">${EQUATIONS[st.layer.kind] || ''}</span>`);
    } else if (key === 'input') {
      lines.push(`${shapeText(st.shape)}, prepared like <code>predict</code>`);
    } else {
      lines.push(`${CLASSES.length} classes: p = softmax(z)`, '<span class="eqs">E = −log p(target)</span>');
    }
    const total = st.shape[0];
    if (st.shown < total) {
      lines.push(`<span class="capped">showing ${st.shown} of ${total} ${isMaps(st.shape) ? 'maps' : 'entries'} (page cap)</span>`);
    }
    return `<section class="stage" data-stage="${key}"><header><h3>${esc(st.title)}</h3>` +
      lines.map((line) => `<p>${line}</p>`).join('') + '</header>' +
      `<div class="passes">${blockHtml(key, 'forward')}${blockHtml(key, 'backward')}</div></section>`;
  }

  function registerBlock(element, key, pass) {
    const st = stage(key);
    const block = { element, key, pass, canvases: [...element.querySelectorAll('canvas')] };
    if (key === 'output') {
      block.cells = [...element.querySelectorAll('.bar')];
      block.row = 1; block.page = 1;
      block.cellAt = (pos) => block.cells[pos.i];
    } else if (isMaps(st.shape)) {
      const [, h, w] = st.shape;
      block.grids = [...element.querySelectorAll('.cells')];
      block.row = w; block.page = h * w;
      block.cellAt = (pos) => (block.grids[pos.c] && block.grids[pos.c].children[pos.y * w + pos.x]) || null;
    } else {
      block.grid = element.querySelector('.cells');
      block.row = vectorCols(st.shown); block.page = block.row * 8;
      block.cellAt = (pos) => (pos.i < st.shown && block.grid.children[pos.i]) || null;
    }
    (blocks[key] = blocks[key] || {})[pass] = block;
    element.block = block;
  }

  function drawStage(key, pass) {
    const block = blocks[key][pass];
    const array = pass === 'forward' ? forwardOf(key) : backwardOf(key);
    block.element.classList.toggle('missing', !array);
    if (!array) return;
    if (key === 'output') {
      const scale = pass === 'forward' ? 1 : Math.max(maxAbs(array.data), 1e-30);
      block.cells.forEach((bar, k) => {
        const v = array.data[k];
        const fill = bar.firstChild;
        const [r, g, b] = colour(v >= 0 ? 0.8 : -0.8);
        fill.style.background = `rgb(${r},${g},${b})`;
        if (pass === 'forward') { fill.style.left = '0'; fill.style.width = `${100 * v}%`; }
        else { const width = 50 * Math.abs(v) / scale; fill.style.left = `${v >= 0 ? 50 : 50 - width}%`; fill.style.width = `${width}%`; }
        bar.previousSibling.lastChild.textContent = pass === 'forward' ? `${(100 * v).toFixed(1)}%` : '';
        bar.setAttribute('aria-label', `${CLASSES[k]}: ${short(v)}`);
      });
      return;
    }
    const st = stage(key);
    if (key === 'input' && pass === 'forward') {
      const pixels = read(image().pixels), size = product(pixels.shape.slice(1));
      block.canvases.forEach((canvas, c) => paint(canvas, size, (i) => { const p = pixels.data[c * size + i]; return [p, p, p]; }));
      return;
    }
    const scale = Math.max(maxAbs(array.data), 1e-30);
    if (isMaps(st.shape)) {
      const size = st.shape[1] * st.shape[2];
      block.canvases.forEach((canvas, c) => paintValues(canvas, array.data, c * size, size, scale));
    } else {
      paintValues(block.canvases[0], array.data, 0, st.shown, scale);
    }
  }

  // ------------------------------------------------------------ weights

  const wblocks = {};
  const PARAMETER_KINDS = ['Conv2d', 'Linear', 'BatchNorm2d', 'BatchNorm1d'];

  // Which output units of layer l the weight panes show: all, or the one chosen.
  function unitsOf(layer) {
    if (layer.unit_view) return [state.units[layer.index] || 0];
    return [...Array(layer.shown).keys()];
  }

  function weightPanesHtml(layer) {
    const l = layer.index;
    const cellAttr = (pass, index) => `data-layer="${l}" data-pass="${pass}" data-index="${index}"`;
    const panes = [];
    const pane = (title, inner, pass) => panes.push(pass
      ? `<div class="block" role="group" aria-label="${esc(`layer ${l} ${title}`)}" data-block="${l}:${pass}"><h4>${title}</h4>${inner}</div>`
      : `<div aria-hidden="true"><h4>${title}</h4>${inner}</div>`);
    if (layer.kind === 'Conv2d') {
      const [, cFull, kh, kw] = layer.weight_shape;
      const cShown = read(layer.weight).shape[1];
      const z = Math.max(4, Math.min(10, Math.round(30 / Math.max(kh, kw))));
      for (const pass of [null, 'weight']) {
        let first = true;
        let grid = `<div class="wgrid" style="grid-template-columns:auto repeat(${cShown},auto)">`;
        for (const k of unitsOf(layer)) {
          grid += `<span class="wrowlabel">${k}</span>`;
          for (let d = 0; d < cShown; d++) {
            grid += gridHtml(kh, kw, z, pass && ((m, n) => {
              const attr = cellAttr(pass, ((k * cFull + d) * kh + m) * kw + n) + (first ? ' tabindex="0"' : '');
              first = false;
              return attr;
            }), `filter ${k}, channel ${d}`);
          }
        }
        pane(pass ? '∂E/∂w' : 'w (rows: filters, columns: input channels)', grid + '</div>', pass);
      }
    } else if (layer.kind === 'Linear') {
      const [, inFull] = layer.weight_shape;
      const inShown = read(layer.weight).shape[1];
      for (const pass of [null, 'weight']) {
        let first = true;
        const tab = () => (first ? ((first = false), ' tabindex="0"') : '');
        let grid;
        if (layer.unit_view) {
          const j = unitsOf(layer)[0], cols = vectorCols(inShown), rows = Math.ceil(inShown / cols);
          grid = gridHtml(rows, cols, vectorZoom(inShown, cols), pass && ((r, c) => {
            const i = r * cols + c;
            return i < inShown ? cellAttr(pass, j * inFull + i) + tab() : 'class="none"';
          }), `weights into unit ${j}`);
        } else {
          const rows = layer.shown, z = Math.max(2, Math.min(8, Math.round(512 / inShown)));
          grid = gridHtml(rows, inShown, z, pass && ((j, i) => cellAttr(pass, j * inFull + i) + tab()));
        }
        pane(pass ? '∂E/∂w' : `w (${layer.unit_view ? 'into the chosen unit' : 'rows: units, columns: inputs'})`, grid, pass);
      }
    } else {
      const n = layer.shown, cols = vectorCols(n), rows = Math.ceil(n / cols), z = vectorZoom(n, cols);
      for (const [title, pass] of [['γ', null], ['∂E/∂γ', 'weight']]) {
        let first = true;
        pane(title, gridHtml(rows, cols, z, pass && ((r, c) => {
          const i = r * cols + c;
          if (i >= n) return 'class="none"';
          const attr = cellAttr(pass, i) + (first ? ' tabindex="0"' : '');
          first = false;
          return attr;
        })), pass);
      }
    }
    if (layer.bias) {
      const n = layer.shown, cols = vectorCols(n), rows = Math.ceil(n / cols), z = vectorZoom(n, cols);
      const name = layer.kind.startsWith('BatchNorm') ? 'β' : 'b';
      for (const pass of [null, 'bias']) {
        let first = true;
        pane(pass ? `∂E/∂${name}` : name, gridHtml(rows, cols, z, pass && ((r, c) => {
          const i = r * cols + c;
          if (i >= n) return 'class="none"';
          const attr = cellAttr(pass, i) + (first ? ' tabindex="0"' : '');
          first = false;
          return attr;
        })), pass);
      }
    }
    return panes.join('');
  }

  function weightBlockHtml(layer) {
    const l = layer.index;
    let chooser = '';
    if (layer.unit_view) {
      const options = [...Array(layer.shown).keys()].map((k) => `<option value="${k}">${k}</option>`).join('');
      chooser = `<p><label>${layer.kind === 'Conv2d' ? 'filter' : 'unit'} <select class="unit" data-layer="${l}">${options}</select></label>` +
        ` (this layer has ${layer.weight_shape.reduce((a, b) => a * b, 1).toLocaleString('en')} weights, over the page's cap of ${CAPS.weight_cells.toLocaleString('en')} drawn at once)</p>`;
    }
    const shape = layer.weight_shape ? shapeText(layer.weight_shape) : String(layer.shown);
    return `<div class="wblock" data-wlayer="${l}"><h3>${l}: ${layer.kind} <span class="mono">w ${shape}</span></h3>${chooser}` +
      `<div class="wpanes">${weightPanesHtml(layer)}</div></div>`;
  }

  function registerWeights(l) {
    const element = document.querySelector(`.wblock[data-wlayer="${l}"]`);
    const w = { element, cells: { weight: new Map(), bias: new Map() }, canvases: {} };
    for (const cell of element.querySelectorAll('[data-pass="weight"], [data-pass="bias"]')) {
      w.cells[cell.dataset.pass].set(+cell.dataset.index, cell);
    }
    for (const pass of ['weight', 'bias']) {
      const blockElement = element.querySelector(`[data-block="${l}:${pass}"]`);
      if (blockElement) {
        const cells = [...blockElement.querySelectorAll('[data-pass]')];
        const layer = DATA.layers[l];
        let row = vectorCols(layer.shown), page = row * 8;
        if (pass === 'weight' && layer.kind === 'Conv2d') { row = layer.kernel[1]; page = layer.kernel[0] * row; }
        if (pass === 'weight' && layer.kind === 'Linear') { row = layer.unit_view ? vectorCols(read(layer.weight).shape[1]) : read(layer.weight).shape[1]; page = row * 8; }
        blockElement.block = { element: blockElement, key: String(l), pass, cells, row, page };
      }
    }
    wblocks[l] = w;
  }

  function buildWeights(l) {
    const layer = DATA.layers[l];
    const old = document.querySelector(`.wblock[data-wlayer="${l}"]`);
    const holder = document.createElement('div');
    holder.innerHTML = weightBlockHtml(layer);
    old.replaceWith(holder.firstChild);
    const chooser = document.querySelector(`.wblock[data-wlayer="${l}"] select.unit`);
    if (chooser) chooser.value = String(state.units[l] || 0);
    registerWeights(l);
    drawWeights(l);
  }

  // The weights' and gradients' values in the order their grids were drawn.
  function drawWeights(l) {
    const layer = DATA.layers[l];
    const element = wblocks[l].element;
    const [valuePane, gradPane, biasPane, biasGradPane] = element.querySelectorAll('.wpanes > div');
    const w = read(layer.weight), g = gradOf(l, 'weight');
    gradPane.classList.toggle('missing', !g);
    const units = unitsOf(layer);
    const pieces = (array) => {
      // Per drawn canvas: [offset, count] into the array's data.
      if (layer.kind === 'Conv2d') {
        const [, c, kh, kw] = w.shape, size = kh * kw;
        return units.flatMap((k) => [...Array(c).keys()].map((d) => [(k * c + d) * size, size]));
      }
      if (layer.kind === 'Linear') {
        const cols = w.shape[1];
        return layer.unit_view ? [[units[0] * cols, cols]] : [[0, w.shape[0] * cols]];
      }
      return [[0, layer.shown]];
    };
    const drawPane = (pane, array) => {
      if (!array) return;
      const canvases = pane.querySelectorAll('canvas');
      const parts = pieces(array);
      const scale = Math.max(...parts.map(([offset, count]) => maxAbs(array.data.subarray(offset, offset + count))), 1e-30);
      parts.forEach(([offset, count], index) => paintValues(canvases[index], array.data, offset, count, scale));
    };
    drawPane(valuePane, w);
    drawPane(gradPane, g);
    if (biasPane) {
      for (const [pane, array] of [[biasPane, read(layer.bias)], [biasGradPane, gradOf(l, 'bias')]]) {
        if (array) paintValues(pane.querySelector('canvas'), array.data, 0, layer.shown, Math.max(maxAbs(array.data), 1e-30));
      }
    }
  }

  // ------------------------------------------------------------ explanations

  // An explanation: HTML, the cells to highlight, and the value it ends with.
  class Explanation {
    constructor(title) { this.parts = [`<h3>${title}</h3>`]; this.highlights = []; }
    add(html) { this.parts.push(html); return this; }
    p(html) { return this.add(`<p>${html}</p>`); }
    eq(html) { return this.add(`<p class="eq">${html}</p>`); }
    note(html) { return this.add(`<p class="note">${html}</p>`); }
    mark(element) { if (element) this.highlights.push(element); }
    result(symbol, value) {
      this.add(`<p class="result">${symbol} = <span class="value">${full(value)}</span></p>`);
      return { html: this.parts.join(''), highlights: this.highlights, value };
    }
  }

  // A small table of a KH × KW window; cls(m, n) may mark a cell.
  function windowTable(kh, kw, text, cls, caption) {
    let rows = '';
    for (let m = 0; m < kh; m++) {
      rows += '<tr>';
      for (let n = 0; n < kw; n++) rows += `<td${cls ? ` class="${cls(m, n)}"` : ''}>${text(m, n)}</td>`;
      rows += '</tr>';
    }
    return `<table class="terms"><caption>${caption}</caption>${rows}</table>`;
  }
  const sideBySide = (...tables) => `<div style="display:flex;gap:0.6em;flex-wrap:wrap">${tables.join('')}</div>`;

  // The terms of a sum, largest |term| first; the rest summed in one line.
  function termsList(terms, columns, shown = 10) {
    const sorted = terms.slice().sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
    const head = `<tr>${columns.map((c) => `<th>${c}</th>`).join('')}</tr>`;
    const rows = sorted.slice(0, shown).map((t) => `<tr>${t.cells.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('');
    const rest = sorted.slice(shown);
    const restSum = rest.reduce((s, t) => s + t.value, 0);
    const restRow = rest.length ? `<tr><td colspan="${columns.length - 1}">the other ${rest.length} terms</td><td>${short(restSum)}</td></tr>` : '';
    return `<table class="terms">${head}${rows}${restRow}</table>`;
  }
  // Groups of terms (a channel's, a filter's), each summarised in one line that
  // expands; all open when there are at most 3, else the largest one.
  function openLargest(groups) {
    let largest = 0;
    groups.forEach((group, n) => { if (group.size > groups[largest].size) largest = n; });
    return groups.map((group, n) => group.html(groups.length <= 3 || n === largest)).join('');
  }
  const sum = (terms) => terms.reduce((s, t) => s + t.value, 0);
  // The last note before the value: the shown terms' sum, or, where part of
  // the sum lies beyond a cap (`capped` says which part), that part's share.
  function closingNote(ex, total, value, capped) {
    if (capped) ex.note(`${capped} beyond the page's cap, so not shown; their share is the value below minus the rest: ${short(value - total)}.`);
    else ex.note(computedNote(total));
  }
  const computedNote = (total) => `The terms add up to ${short(total)} here (in double precision); ` +
    'the value below is the one the layer computed (float32), as embedded in the page.';

  function posText(pos) {
    return pos.i !== undefined ? `entry ${pos.i}` : `channel ${pos.c}, row ${pos.y}, column ${pos.x}`;
  }
  const idx = (pos) => (pos.i !== undefined ? sub(pos.i) : sub(`${pos.c},${pos.y},${pos.x}`));
  function cellOf(key, pass, pos) { const b = blocks[key] && blocks[key][pass]; return b ? b.cellAt(pos) : null; }

  function outputSizeLine(layer) {
    const [, h, w] = layer.in_shape, [kh, kw] = layer.kernel, [sh, sw] = layer.stride, [ph, pw] = layer.padding;
    const size = (n, k, s, p) => `(${n} − ${k} + 2·${p})/${s} + 1 = ${Math.floor((n - k + 2 * p) / s) + 1}`;
    return `Output size, eq. 4.2: W2 = (W1 − F + 2P)/S + 1 = ${size(w, kw, sw, pw)}; eq. 4.3: H2 = ${size(h, kh, sh, ph)}.`;
  }

  function activationNote(ex, key, pos) {
    const next = nextKey(key);
    if (next === null) return;
    const kind = DATA.layers[+next].kind;
    if (!ACTIVATIONS.includes(kind)) return;
    const a = at(forwardOf(next), pos);
    ex.note(`The activation f follows as layer ${next} (${kind}): a = f(net) = ${short(a)}.`);
  }

  // ---- forward

  function explainInput(pos) {
    const ex = new Explanation(`Input, ${posText(pos)}`);
    const pixel = at(read(image().pixels), pos);
    const mean = DATA.normalization.mean[pos.c], std = DATA.normalization.std[pos.c];
    ex.p('The picture, prepared as <code>tinyconv predict</code> prepares it, normalised as in training:');
    ex.eq(`x = (pixel/255 − μ)/σ = (${pixel}/255 − ${short(mean)})/${short(std)}`);
    return ex.result(`x${idx(pos)}`, at(forwardOf('input'), pos));
  }

  function explainSoftmax(k) {
    const ex = new Explanation(`Output: probability of class ${k} (${esc(CLASSES[k])})`);
    const z = forwardOf(String(L - 1)).data;
    const top = Math.max(...z);
    const terms = [...z].map((v, j) => ({ value: Math.exp(v - top), cells: [`${j} ${esc(CLASSES[j])}`, short(v), short(Math.exp(v - top))] }));
    const total = sum(terms);
    ex.eq(`softmax: p${sub('k')} = e^(z${sub('k')}) / Σ${sub('j')} e^(z${sub('j')}), computed as e^(z${sub('k')} − max z) / Σ e^(z${sub('j')} − max z) so that no exponential overflows`);
    ex.add(`<table class="terms"><tr><th>class j</th><th>z${sub('j')} (logit)</th><th>e^(z${sub('j')} − ${short(top)})</th></tr>` +
      terms.map((t, j) => `<tr>${t.cells.map((c) => `<td${j === k ? ' class="hit"' : ''}>${c}</td>`).join('')}</tr>`).join('') + '</table>');
    ex.p(`p${sub(k)} = ${short(terms[k].value)} / ${short(total)}`);
    for (let j = 0; j < z.length; j++) ex.mark(cellOf(String(L - 1), 'forward', { i: j }));
    return ex.result(`p${sub(k)}`, at(forwardOf('output'), { i: k }));
  }

  function explainConv(layer, key, pos) {
    const ex = new Explanation(`Layer ${key} (Conv2d), forward: ${posText(pos)}`);
    const inKey = prevKey(key), input = forwardOf(inKey);
    const w = read(layer.weight);
    const [cIn, h, wd] = layer.in_shape;
    const [kh, kw] = layer.kernel, [sh, sw] = layer.stride, [ph, pw] = layer.padding;
    const cShown = w.shape[1], k = pos.c;
    const bias = layer.bias ? read(layer.bias).data[k] : 0;
    ex.eq(`eq. 4.4: net${sub('k,i,j')} = Σ${sub('d')} Σ${sub('m')} Σ${sub('n')} w${sub('k,d,m,n')} · x${sub('d, i·S+m, j·S+n')} + w${sub('b')}` +
      ` (eq. 4.1 for one channel), on the input zero-padded by P`);
    ex.p(`Filter ${k}: ${plural(cIn, 'channel')} × ${kh}×${kw}; stride S = (${sh}, ${sw}); padding P = (${ph}, ${pw}). ` +
      `Output (i, j) = (${pos.y}, ${pos.x}) reads padded rows ${pos.y * sh}…${pos.y * sh + kh - 1}, columns ${pos.x * sw}…${pos.x * sw + kw - 1}: the receptive field, highlighted on ${inKey === 'input' ? 'the input' : `layer ${inKey}'s maps`}.`);
    let total = 0;
    const groups = [];
    for (let d = 0; d < cShown; d++) {
      let subtotal = 0;
      const xs = [], ws = [], ps = [];
      for (let m = 0; m < kh; m++) {
        for (let n = 0; n < kw; n++) {
          const r = pos.y * sh + m - ph, c = pos.x * sw + n - pw;
          const inside = r >= 0 && r < h && c >= 0 && c < wd;
          const x = inside ? at(input, { c: d, y: r, x: c }) : 0;
          const weight = w.data[((k * cShown + d) * kh + m) * kw + n];
          xs.push(inside ? x : null); ws.push(weight); ps.push(weight * x);
          subtotal += weight * x;
          if (inside) ex.mark(cellOf(inKey, 'forward', { c: d, y: r, x: c }));
        }
      }
      total += subtotal;
      const cell = (list) => (m, n) => { const v = list[m * kw + n]; return v === null ? '0 (pad)' : short(v); };
      const tables = sideBySide(
        windowTable(kh, kw, cell(xs), (m, n) => (xs[m * kw + n] === null ? 'zero' : ''), `x${sub(`${d},…`)} (window)`),
        windowTable(kh, kw, cell(ws), null, `w${sub(`${k},${d},m,n`)}`),
        windowTable(kh, kw, cell(ps), null, 'w · x'));
      groups.push({ size: Math.abs(subtotal), html: (open) => `<details${open ? ' open' : ''}><summary>channel d = ${d}: Σ${sub('m,n')} w·x = ${short(subtotal)}</summary>${tables}</details>` });
    }
    ex.add(openLargest(groups));
    const value = at(forwardOf(key), pos);
    ex.p(`Σ over the channels = ${short(total)}; plus the bias w${sub('b')} = ${short(bias)} gives ${short(total + bias)}.`);
    closingNote(ex, total + bias, value, cIn > cShown && beyond('Channel', cShown, cIn - 1));
    ex.note(outputSizeLine(layer));
    activationNote(ex, key, pos);
    return ex.result(`net${idx(pos)}`, value);
  }

  function poolWindow(layer, key, pos, input) {
    const [, h, w] = layer.in_shape, [kh, kw] = layer.kernel, [sh, sw] = layer.stride, [ph, pw] = layer.padding;
    const cells = [];
    for (let m = 0; m < kh; m++) {
      for (let n = 0; n < kw; n++) {
        const r = pos.y * sh + m - ph, c = pos.x * sw + n - pw;
        const inside = r >= 0 && r < h && c >= 0 && c < w;
        cells.push({ m, n, r, c, inside, v: inside ? at(input, { c: pos.c, y: r, x: c }) : undefined });
      }
    }
    return cells;
  }

  function explainPool(layer, key, pos) {
    const isMax = layer.kind === 'MaxPool2d';
    const ex = new Explanation(`Layer ${key} (${layer.kind}), forward: ${posText(pos)}`);
    const inKey = prevKey(key), input = forwardOf(inKey);
    const [kh, kw] = layer.kernel;
    const cells = poolWindow(layer, key, pos, input);
    for (const cell of cells) if (cell.inside) ex.mark(cellOf(inKey, 'forward', { c: pos.c, y: cell.r, x: cell.c }));
    const value = at(forwardOf(key), pos);
    let best = null;
    for (const cell of cells) if (cell.inside && (best === null || cell.v > best.v)) best = cell;
    const padText = isMax ? '−∞ (pad)' : '0 (pad)';
    const text = (m, n) => { const cell = cells[m * kw + n]; return cell.inside ? short(cell.v) : padText; };
    if (isMax) {
      ex.eq(`max pooling: a${sub('c,i,j')} = max over the ${kh}×${kw} window of x${sub('c, i·S+m, j·S+n')} (padding, if any, is −∞ and never wins)`);
      ex.add(windowTable(kh, kw, text, (m, n) => (cells[m * kw + n] === best ? 'hit' : ''), 'the window; the maximum marked'));
      ex.p(`max = ${short(best.v)}, at row ${best.r}, column ${best.c} of layer ${inKey}'s channel ${pos.c}.`);
    } else {
      const total = cells.reduce((s, cell) => s + (cell.inside ? cell.v : 0), 0);
      ex.eq(`mean pooling: a${sub('c,i,j')} = (1/(${kh}·${kw})) Σ${sub('m,n')} x${sub('c, i·S+m, j·S+n')} (padded zeros count)`);
      ex.add(windowTable(kh, kw, text, null, 'the window'));
      ex.p(`(${short(total)}) / ${kh * kw} = ${short(total / (kh * kw))}`);
    }
    ex.note(outputSizeLine(layer));
    return ex.result(`a${idx(pos)}`, value);
  }

  function explainLinear(layer, key, pos) {
    const ex = new Explanation(`Layer ${key} (Linear), forward: unit ${pos.i}`);
    const inKey = prevKey(key), input = forwardOf(inKey), w = read(layer.weight);
    const [, inFull] = layer.weight_shape, inShown = w.shape[1], j = pos.i;
    const bias = layer.bias ? read(layer.bias).data[j] : 0;
    const terms = [];
    for (let i = 0; i < inShown; i++) {
      const a = input.data[i], weight = w.data[j * inShown + i];
      terms.push({ value: weight * a, i, cells: [i, short(weight), short(a), short(weight * a)] });
    }
    ex.eq(`fully connected: net${sub('j')} = Σ${sub('i')} w${sub('j,i')} · a${sub('i')} + b${sub('j')}, ${inFull} inputs`);
    ex.p('The largest contributions w·a, the rest summed:');
    ex.add(termsList(terms, ['i', `w${sub(`${j},i`)}`, `a${sub('i')}`, 'w·a']));
    terms.slice().sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 10)
      .forEach((t) => ex.mark(cellOf(inKey, 'forward', { i: t.i })));
    const total = sum(terms), value = at(forwardOf(key), pos);
    ex.p(`Σ w·a = ${short(total)}; plus b${sub(j)} = ${short(bias)} gives ${short(total + bias)}.`);
    closingNote(ex, total + bias, value, inFull > inShown && beyond('Input', inShown, inFull - 1));
    activationNote(ex, key, pos);
    return ex.result(`net${sub(j)}`, value);
  }

  function channelOf(pos) { return pos.i !== undefined ? pos.i : pos.c; }

  function explainBatchNorm(layer, key, pos) {
    const ex = new Explanation(`Layer ${key} (${layer.kind}), forward: ${posText(pos)}`);
    const inKey = prevKey(key), c = channelOf(pos);
    const x = at(forwardOf(inKey), pos);
    const gamma = read(layer.weight).data[c], beta = read(layer.bias).data[c];
    const mean = read(layer.running_mean).data[c], variance = read(layer.running_var).data[c];
    ex.mark(cellOf(inKey, 'forward', pos));
    ex.eq('batch normalisation (evaluation: the running mean μ and variance σ² stored in the model): ' +
      'y = γ · (x − μ) / √(σ² + ε) + β');
    ex.p(`channel ${c}: x = ${short(x)}, μ = ${short(mean)}, σ² = ${short(variance)}, ε = ${layer.eps}, γ = ${short(gamma)}, β = ${short(beta)}`);
    const y = gamma * (x - mean) / Math.sqrt(variance + layer.eps) + beta;
    ex.p(`y = ${short(gamma)} · (${short(x)} − ${short(mean)}) / √(${short(variance)} + ${layer.eps}) + ${short(beta)} = ${short(y)}`);
    return ex.result(`y${idx(pos)}`, at(forwardOf(key), pos));
  }

  function explainActivation(layer, key, pos) {
    const ex = new Explanation(`Layer ${key} (${layer.kind}), forward: ${posText(pos)}`);
    const inKey = prevKey(key), net = at(forwardOf(inKey), pos);
    ex.mark(cellOf(inKey, 'forward', pos));
    if (layer.kind === 'ReLU') ex.eq(`ReLU: a = max(0, net) = max(0, ${short(net)})`);
    else if (layer.kind === 'Sigmoid') ex.eq(`sigmoid: a = 1 / (1 + e^(−net)) = 1 / (1 + e^(${short(-net)}))`);
    else ex.eq(`tanh: a = tanh(net) = tanh(${short(net)})`);
    return ex.result(`a${idx(pos)}`, at(forwardOf(key), pos));
  }

  function explainFlatten(layer, key, pos) {
    const ex = new Explanation(`Layer ${key} (Flatten), forward: entry ${pos.i}`);
    const inKey = prevKey(key), [, h, w] = layer.in_shape;
    const source = { c: Math.floor(pos.i / (h * w)), y: Math.floor(pos.i / w) % h, x: pos.i % w };
    ex.mark(cellOf(inKey, 'forward', source));
    ex.eq(`Flatten lists the maps channel by channel, row by row: entry i = (c·H + y)·W + x = (${source.c}·${h} + ${source.y})·${w} + ${source.x}`);
    ex.p(`so it is layer ${inKey}'s value at channel ${source.c}, row ${source.y}, column ${source.x}: ${short(at(forwardOf(inKey), source))}`);
    return ex.result(`a${sub(pos.i)}`, at(forwardOf(key), pos));
  }

  function explainPassThrough(layer, key, pos) {
    const ex = new Explanation(`Layer ${key} (${layer.kind}), forward: ${posText(pos)}`);
    const inKey = prevKey(key);
    ex.mark(cellOf(inKey, 'forward', pos));
    ex.eq(layer.kind === 'Dropout' ? `Dropout (p = ${layer.p}) is off in evaluation: a = x, the value of layer ${inKey}`
      : `Identity: a = x, the value of layer ${inKey}`);
    return ex.result(`a${idx(pos)}`, at(forwardOf(key), pos));
  }

  function explainForward(key, pos) {
    if (key === 'input') return explainInput(pos);
    if (key === 'output') return explainSoftmax(pos.i);
    const layer = DATA.layers[+key];
    switch (layer.kind) {
      case 'Conv2d': return explainConv(layer, key, pos);
      case 'MaxPool2d': case 'AvgPool2d': return explainPool(layer, key, pos);
      case 'Linear': return explainLinear(layer, key, pos);
      case 'BatchNorm2d': case 'BatchNorm1d': return explainBatchNorm(layer, key, pos);
      case 'Flatten': return explainFlatten(layer, key, pos);
      case 'Dropout': case 'Identity': return explainPassThrough(layer, key, pos);
      default: return explainActivation(layer, key, pos);
    }
  }

  // ---- backward: δ of a stage's output, from the δ of the layer after it

  const stageName = (key) => (key === 'input' ? 'the input' : `layer ${key}'s output`);

  function explainLossDelta(key, k) {
    const ex = new Explanation(`${key === 'output' ? 'Output' : `Layer ${key} (${DATA.layers[L - 1].kind})`}, backward: ∂E/∂z${sub(k)} for class ${k} (${esc(CLASSES[k])})`);
    const t = state.target, p = forwardOf('output'), b = backward();
    ex.eq(`cross-entropy of the softmax: E = −log p${sub('t')}; ∂E/∂z${sub('k')} = p${sub('k')} − y${sub('k')}, y the one-hot vector of the target class`);
    ex.p(`target t = ${t} (${esc(CLASSES[t])}): E = −log ${short(p.data[t])} = ${short(b.loss)}`);
    ex.p(`∂E/∂z${sub(k)} = ${short(p.data[k])} − ${k === t ? 1 : 0}`);
    ex.mark(cellOf('output', 'forward', { i: k }));
    return ex.result(`δ${sub(k)}`, at(backwardOf(key), { i: k }));
  }

  function explainConvDelta(next, key, pos) {
    const nk = String(next.index);
    const ex = new Explanation(`δ at ${stageName(key)}, ${posText(pos)}: back through layer ${nk} (Conv2d)`);
    const w = read(next.weight), delta = backwardOf(nk);
    const [fShown, cShown, kh, kw] = w.shape, fAll = next.out_shape[0];
    const [, oh, ow] = next.out_shape, [sh, sw] = next.stride, [ph, pw] = next.padding;
    const d = pos.c, yp = pos.y + ph, xp = pos.x + pw;
    ex.eq(`eq. 5.3: δ${sup('l−1')}${sub('d')} = Σ${sub('k')} δ${sup('l')}${sub('k')} * W${sup('l')}${sub('k,d')} ` +
      `(the f′(net) factor of eq. 5.1/5.2 comes where δ passes back through an activation layer). ` +
      `Each * is a full convolution: δ${sub('k')}, expanded for the stride and padded with ${kh - 1}×${kw - 1} rings of zeros, ` +
      `cross-correlated with the filter rotated by 180°.`);
    ex.p(`Stride S = (${sh}, ${sw}): ${sh > 1 || sw > 1 ? `${sh - 1}, ${sw - 1} zeros go between δ's values (the skipped outputs have δ = 0)` : 'no expansion needed'}. ` +
      `Padding P = (${ph}, ${pw}): row ${pos.y}, column ${pos.x} is row ${yp}, column ${xp} of the padded input; the padding rings are cropped at the end.`);
    const groups = [];
    let total = 0, quiet = 0;
    for (let k = 0; k < fShown && d < cShown; k++) {
      const win = [], rot = [], prods = [], kinds = [];
      let subtotal = 0, live = false;
      for (let m = 0; m < kh; m++) {
        for (let n = 0; n < kw; n++) {
          // Window position in the expanded map E, which the padding shifts by KH-1, KW-1.
          const er = yp + m - (kh - 1), ec = xp + n - (kw - 1);
          let v = 0, kind = 'zero';
          if (er < 0 || ec < 0 || er > (oh - 1) * sh || ec > (ow - 1) * sw) kind = 'zero';
          else if (er % sh || ec % sw) kind = 'zero';
          else {
            const i = er / sh, j = ec / sw;
            v = delta.data[(k * oh + i) * ow + j];
            kind = v !== 0 ? 'hit' : ''; live = live || v !== 0;
            ex.mark(cellOf(nk, 'backward', { c: k, y: i, x: j }));
          }
          const r = w.data[((k * cShown + d) * kh + (kh - 1 - m)) * kw + (kw - 1 - n)];
          win.push(v); kinds.push(kind); rot.push(r); prods.push(r * v);
          subtotal += r * v;
        }
      }
      total += subtotal;
      if (!live) { quiet += 1; continue; }
      const cell = (list) => (m, n) => short(list[m * kw + n]);
      groups.push({ size: Math.abs(subtotal), html: (open) => `<details${open ? ' open' : ''}><summary>filter k = ${k}: Σ = ${short(subtotal)}</summary>` +
        sideBySide(windowTable(kh, kw, cell(win), (m, n) => kinds[m * kw + n], `δ${sub(k)} expanded and padded (window)`),
          windowTable(kh, kw, cell(rot), null, `rot180(W${sub(`${k},${d}`)})`),
          windowTable(kh, kw, cell(prods), null, 'products')) + '</details>' });
    }
    ex.add(openLargest(groups));
    if (quiet) ex.note(`${plural(quiet, 'filter')}: the window holds only zeros (the border of the full convolution, or stride gaps), so ${quiet === 1 ? 'it adds' : 'they add'} 0.`);
    const value = at(backwardOf(key), pos);
    ex.p(`Σ over the filters = ${short(total)}`);
    closingNote(ex, total, value, (d >= cShown && beyond('Channel', d, d)) ||
      (fAll > fShown && beyond('Filter', fShown, fAll - 1)));
    return ex.result(`δ${idx(pos)}`, value);
  }

  function sup(text) { return `<sup>${text}</sup>`; }

  // The pooling windows (i, j) of layer `next` that hold input position pos.
  function windowsHolding(next, pos) {
    const [, oh, ow] = next.out_shape, [kh, kw] = next.kernel, [sh, sw] = next.stride, [ph, pw] = next.padding;
    const found = [];
    for (let i = 0; i < oh; i++) {
      const top = i * sh - ph;
      if (pos.y < top || pos.y >= top + kh) continue;
      for (let j = 0; j < ow; j++) {
        const left = j * sw - pw;
        if (pos.x >= left && pos.x < left + kw) found.push({ c: pos.c, y: i, x: j });
      }
    }
    return found;
  }

  function explainPoolDelta(next, key, pos) {
    const nk = String(next.index), isMax = next.kind === 'MaxPool2d';
    const ex = new Explanation(`δ at ${stageName(key)}, ${posText(pos)}: back through layer ${nk} (${next.kind})`);
    const delta = backwardOf(nk), input = forwardOf(key);
    const [kh, kw] = next.kernel, [sh, sw] = next.stride, [ph, pw] = next.padding;
    const windows = windowsHolding(next, pos);
    let total = 0;
    if (isMax) {
      ex.eq('max pooling backward: δ of a window goes unchanged to the input that held its maximum (the first, in row-major order, among equal ones); the others get 0. Where windows overlap, contributions add up.');
    } else {
      ex.eq(`mean pooling backward: each of a window's ${kh}·${kw} inputs gets δ/(${kh}·${kw}).` +
        (sh === kh && sw === kw && ph === 0 && pw === 0
          ? ` The windows tile the input, so this is the Kronecker product δ${sup('l−1')} = δ${sup('l')} ⊗ (1/${kh * kw})${sub(`${kh}×${kw}`)}.` : ' Overlapping windows add up.'));
    }
    for (const win of windows) {
      const d = at(delta, win);
      ex.mark(cellOf(nk, 'backward', win));
      if (isMax) {
        const cells = poolWindow(next, nk, win, input);
        let best = null;
        for (const cell of cells) if (cell.inside && (best === null || cell.v > best.v)) best = cell;
        const mine = best.r === pos.y && best.c === pos.x;
        ex.add(windowTable(kh, kw, (m, n) => { const cell = cells[m * kw + n]; return cell.inside ? short(cell.v) : '−∞'; },
          (m, n) => { const cell = cells[m * kw + n]; return cell === best ? 'hit' : (cell.r === pos.y && cell.c === pos.x ? 'zero' : ''); },
          `window (${win.y}, ${win.x}) of layer ${key}'s values`));
        ex.p(mine ? `This input is the window's maximum: it gets δ${sup(nk)}${sub(`${win.c},${win.y},${win.x}`)} = ${short(d)}.`
          : `The maximum is at row ${best.r}, column ${best.c}: this input gets 0 from window (${win.y}, ${win.x}).`);
        if (mine) total += d;
      } else {
        ex.p(`window (${win.y}, ${win.x}): δ = ${short(d)}, share ${short(d)}/${kh * kw} = ${short(d / (kh * kw))}`);
        total += d / (kh * kw);
      }
    }
    if (!windows.length) ex.p('No window reaches this position (eq. 4.2 floored), so its δ is 0.');
    ex.note(computedNote(total));
    return ex.result(`δ${idx(pos)}`, at(backwardOf(key), pos));
  }

  function explainLinearDelta(next, key, pos) {
    const nk = String(next.index);
    const ex = new Explanation(`δ at ${stageName(key)}, entry ${pos.i}: back through layer ${nk} (Linear)`);
    const w = read(next.weight), delta = backwardOf(nk);
    const [outShown, inShown] = w.shape, outFull = next.weight_shape[0], i = pos.i;
    ex.eq(`fully connected backward: δ${sup('l−1')}${sub('i')} = Σ${sub('j')} w${sub('j,i')} · δ${sup('l')}${sub('j')} (Wᵀδ; the f′(net) factor comes where δ passes back through an activation layer)`);
    const terms = [];
    for (let j = 0; j < outShown && i < inShown; j++) {
      const weight = w.data[j * inShown + i], d = delta.data[j];
      terms.push({ value: weight * d, j, cells: [j, short(weight), short(d), short(weight * d)] });
    }
    ex.add(termsList(terms, ['j', `w${sub(`j,${i}`)}`, `δ${sub('j')}`, 'w·δ']));
    terms.slice().sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 10)
      .forEach((t) => ex.mark(cellOf(nk, 'backward', { i: t.j })));
    const total = sum(terms), value = at(backwardOf(key), pos);
    closingNote(ex, total, value, outFull > outShown && beyond('Unit', outShown, outFull - 1));
    return ex.result(`δ${sub(i)}`, value);
  }

  function explainActivationDelta(next, key, pos) {
    const nk = String(next.index);
    const ex = new Explanation(`δ at ${stageName(key)}, ${posText(pos)}: back through layer ${nk} (${next.kind})`);
    const net = at(forwardOf(key), pos), a = at(forwardOf(nk), pos), d = at(backwardOf(nk), pos);
    ex.mark(cellOf(nk, 'backward', pos));
    ex.eq(`eq. 5.1/5.2: δ = δ${sup('after')} ∘ f′(net), net being this value's forward value ${short(net)}`);
    let derivative;
    if (next.kind === 'ReLU') {
      derivative = net > 0 ? 1 : 0;
      ex.p(`ReLU: f′(net) = 1 if net > 0, else 0: f′(${short(net)}) = ${derivative}`);
    } else if (next.kind === 'Sigmoid') {
      derivative = a * (1 - a);
      ex.p(`sigmoid: f′(net) = a(1 − a) with a = ${short(a)}: ${short(derivative)}`);
    } else {
      derivative = 1 - a * a;
      ex.p(`tanh: f′(net) = 1 − a² with a = ${short(a)}: ${short(derivative)}`);
    }
    ex.p(`δ = ${short(d)} · ${short(derivative)} = ${short(d * derivative)}`);
    return ex.result(`δ${idx(pos)}`, at(backwardOf(key), pos));
  }

  function explainBatchNormDelta(next, key, pos) {
    const nk = String(next.index);
    const ex = new Explanation(`δ at ${stageName(key)}, ${posText(pos)}: back through layer ${nk} (${next.kind})`);
    const c = channelOf(pos), d = at(backwardOf(nk), pos);
    const gamma = read(next.weight).data[c], variance = read(next.running_var).data[c];
    ex.mark(cellOf(nk, 'backward', pos));
    ex.eq('batch normalisation backward, evaluation mode (μ and σ² are constants): δ = δ' + sup('after') + ' · γ / √(σ² + ε)');
    const factor = gamma / Math.sqrt(variance + next.eps);
    ex.p(`δ = ${short(d)} · ${short(gamma)} / √(${short(variance)} + ${next.eps}) = ${short(d)} · ${short(factor)} = ${short(d * factor)}`);
    return ex.result(`δ${idx(pos)}`, at(backwardOf(key), pos));
  }

  function explainFlattenDelta(next, key, pos) {
    const nk = String(next.index);
    const ex = new Explanation(`δ at ${stageName(key)}, ${posText(pos)}: back through layer ${nk} (Flatten)`);
    const [, h, w] = next.in_shape, i = (pos.c * h + pos.y) * w + pos.x;
    ex.mark(cellOf(nk, 'backward', { i }));
    ex.eq(`Flatten only reorders: δ${sub(`${pos.c},${pos.y},${pos.x}`)} is the vector's δ at i = (c·H + y)·W + x = ${i}`);
    ex.p(`δ${sub(i)} = ${short(at(backwardOf(nk), { i }))}${i >= next.shown ? ' (beyond the page\'s cap for vectors)' : ''}`);
    return ex.result(`δ${idx(pos)}`, at(backwardOf(key), pos));
  }

  function explainPassDelta(next, key, pos) {
    const nk = String(next.index);
    const ex = new Explanation(`δ at ${stageName(key)}, ${posText(pos)}: back through layer ${nk} (${next.kind})`);
    ex.mark(cellOf(nk, 'backward', pos));
    ex.eq(`${next.kind} passes values through in evaluation, so δ passes back unchanged: δ = ${short(at(backwardOf(nk), pos))}`);
    return ex.result(`δ${idx(pos)}`, at(backwardOf(key), pos));
  }

  function explainBackward(key, pos) {
    if (key === 'output' || key === String(L - 1)) return explainLossDelta(key, pos.i);
    const next = DATA.layers[+nextKey(key)];
    switch (next.kind) {
      case 'Conv2d': return explainConvDelta(next, key, pos);
      case 'MaxPool2d': case 'AvgPool2d': return explainPoolDelta(next, key, pos);
      case 'Linear': return explainLinearDelta(next, key, pos);
      case 'BatchNorm2d': case 'BatchNorm1d': return explainBatchNormDelta(next, key, pos);
      case 'Flatten': return explainFlattenDelta(next, key, pos);
      case 'Dropout': case 'Identity': return explainPassDelta(next, key, pos);
      default: return explainActivationDelta(next, key, pos);
    }
  }

  // ---- parameter gradients

  function explainWeight(l, index) {
    const layer = DATA.layers[l], key = String(l), inKey = prevKey(key);
    const delta = backwardOf(key), input = forwardOf(inKey), g = gradOf(l, 'weight');
    if (layer.kind === 'Conv2d') {
      const [, cFull, kh, kw] = layer.weight_shape, [, cShown] = g.shape;
      const n = index % kw, m = Math.floor(index / kw) % kh, d = Math.floor(index / (kw * kh)) % cFull, k = Math.floor(index / (kw * kh * cFull));
      const [, h, wd] = layer.in_shape, [, oh, ow] = layer.out_shape, [sh, sw] = layer.stride, [ph, pw] = layer.padding;
      const ex = new Explanation(`Layer ${l} (Conv2d): ∂E/∂w${sub(`${k},${d},${m},${n}`)}`);
      ex.eq('the filter is shared by every position (weight sharing), so its gradient sums over them all: ' +
        `∂E/∂w${sub('k,d,m,n')} = Σ${sub('i')} Σ${sub('j')} δ${sub('k,i,j')} · a${sub('d, i·S+m, j·S+n')} ` +
        '(δ of this layer\'s output, a its zero-padded input; with stride S the expanded δ gives the same sum)');
      ex.p(`w = ${short(read(layer.weight).data[((k * cShown + d) * kh + m) * kw + n])}; δ from this layer's backward block, a from ${inKey === 'input' ? 'the input' : `layer ${inKey}`}.`);
      const terms = [];
      let zeros = 0;
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const r = i * sh + m - ph, c = j * sw + n - pw;
          const inside = r >= 0 && r < h && c >= 0 && c < wd;
          const dv = delta.data[(k * oh + i) * ow + j], av = inside ? at(input, { c: d, y: r, x: c }) : 0;
          if (dv === 0 || av === 0) { zeros += 1; continue; }
          terms.push({ value: dv * av, pos: { c: k, y: i, x: j }, cells: [`(${i}, ${j})`, short(dv), short(av), short(dv * av)] });
        }
      }
      ex.add(termsList(terms, ['(i, j)', 'δ', 'a', 'δ·a'], 12));
      terms.slice().sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 12)
        .forEach((t) => ex.mark(cellOf(key, 'backward', t.pos)));
      ex.p(`${plural(oh * ow, 'position')}: ${zeros} of them have δ = 0 or a = 0 (padding) and add nothing; Σ of the other ${terms.length} = ${short(sum(terms))}`);
      ex.note(computedNote(sum(terms)));
      return ex.result(`∂E/∂w${sub(`${k},${d},${m},${n}`)}`, g.data[((k * cShown + d) * kh + m) * kw + n]);
    }
    if (layer.kind === 'Linear') {
      const [, inFull] = layer.weight_shape, inShown = g.shape[1];
      const j = Math.floor(index / inFull), i = index % inFull;
      const ex = new Explanation(`Layer ${l} (Linear): ∂E/∂w${sub(`${j},${i}`)}`);
      const dv = at(delta, { i: j }), av = at(input, { i });
      ex.eq(`∂E/∂W = δ aᵀ: ∂E/∂w${sub('j,i')} = δ${sub('j')} · a${sub('i')}, summed over the samples: here one image, so one product`);
      ex.p(`w = ${short(read(layer.weight).data[j * inShown + i])}; δ${sub(j)} = ${short(dv)} (this layer's δ), a${sub(i)} = ${short(av)} (${inKey === 'input' ? 'the input' : `layer ${inKey}`}'s output)`);
      ex.mark(cellOf(key, 'backward', { i: j }));
      ex.mark(cellOf(inKey, 'forward', { i }));
      ex.p(`δ${sub(j)} · a${sub(i)} = ${short(dv)} · ${short(av)}`);
      return ex.result(`∂E/∂w${sub(`${j},${i}`)}`, g.data[j * inShown + i]);
    }
    const c = index;
    const ex = new Explanation(`Layer ${l} (${layer.kind}): ∂E/∂γ${sub(c)}`);
    const mean = read(layer.running_mean).data[c], variance = read(layer.running_var).data[c];
    const inv = 1 / Math.sqrt(variance + layer.eps);
    ex.eq(`∂E/∂γ${sub('c')} = Σ δ${sub('c,…')} · x̂${sub('c,…')} over the channel's positions, x̂ = (x − μ)/√(σ² + ε) = (x − ${short(mean)}) · ${short(inv)}`);
    const terms = [];
    eachPosition(layer.out_shape, c, (pos) => {
      const dv = at(delta, pos), xv = at(input, pos);
      if (dv) terms.push({ value: dv * (xv - mean) * inv, pos, cells: [posShort(pos), short(dv), short((xv - mean) * inv), short(dv * (xv - mean) * inv)] });
    });
    ex.add(termsList(terms, ['position', 'δ', 'x̂', 'δ·x̂'], 12));
    ex.note(computedNote(sum(terms)));
    return ex.result(`∂E/∂γ${sub(c)}`, g.data[c]);
  }

  function eachPosition(shape, c, visit) {
    if (shape.length === 1) { visit({ i: c }); return; }
    for (let y = 0; y < shape[1]; y++) for (let x = 0; x < shape[2]; x++) visit({ c, y, x });
  }
  const posShort = (pos) => (pos.i !== undefined ? String(pos.i) : `(${pos.y}, ${pos.x})`);

  function explainBias(l, index) {
    const layer = DATA.layers[l], key = String(l), delta = backwardOf(key), g = gradOf(l, 'bias');
    const name = layer.kind.startsWith('BatchNorm') ? 'β' : 'b';
    const ex = new Explanation(`Layer ${l} (${layer.kind}): ∂E/∂${name}${sub(index)}`);
    if (layer.kind === 'Linear') {
      ex.eq(`∂E/∂b${sub('j')} = δ${sub('j')}: one image, one term`);
      ex.mark(cellOf(key, 'backward', { i: index }));
      ex.p(`δ${sub(index)} = ${short(at(delta, { i: index }))}`);
    } else {
      ex.eq(`∂E/∂${name} = Σ${sub('i,j')} δ${sub('i,j')}: the sum of the channel's sensitivity map`);
      const terms = [];
      eachPosition(layer.out_shape, index, (pos) => {
        const dv = at(delta, pos);
        if (dv) { terms.push({ value: dv, cells: [posShort(pos), short(dv)] }); ex.mark(cellOf(key, 'backward', pos)); }
      });
      ex.add(termsList(terms, ['position', 'δ'], 12));
      ex.p(`${plural(terms.length, 'non-zero δ')}, Σ = ${short(sum(terms))}`);
      ex.note(computedNote(sum(terms)));
    }
    return ex.result(`∂E/∂${name}${sub(index)}`, g.data[index]);
  }

  function explain(s) {
    if ((s.pass !== 'forward') && !backward()) {
      const ex = new Explanation('Backward pass not in the page');
      ex.p(`The page holds the backward pass of ${DATA.stored_targets} target classes per image (its size cap); choose one of them in the target list.`);
      return { html: ex.parts.join(''), highlights: [] };
    }
    if (s.pass === 'weight') return explainWeight(+s.layer, s.pos.i);
    if (s.pass === 'bias') return explainBias(+s.layer, s.pos.i);
    return s.pass === 'forward' ? explainForward(s.layer, s.pos) : explainBackward(s.layer, s.pos);
  }

  // ------------------------------------------------------------ selection

  let marks = [];
  function clearMarks() { for (const [element, cls] of marks) element.classList.remove(cls); marks = []; }
  function addMark(element, cls) { if (element) { element.classList.add(cls); marks.push([element, cls]); } }

  function descriptor(element) {
    const d = element.dataset;
    const pos = d.index !== undefined ? { i: +d.index } : { c: +d.channel, y: +d.y, x: +d.x };
    return { layer: d.layer, pass: d.pass, pos };
  }
  function elementOf(s) {
    if (s.pass === 'weight' || s.pass === 'bias') return wblocks[+s.layer] ? wblocks[+s.layer].cells[s.pass].get(s.pos.i) : null;
    return cellOf(s.layer, s.pass, s.pos);
  }

  const detail = byId('detail');
  function showDetail() {
    clearMarks();
    const s = state.selected;
    if (!s) return;
    const explained = explain(s);
    detail.innerHTML = explained.html;
    explained.highlights.forEach((element) => addMark(element, 'hl'));
    addMark(elementOf(s), 'sel');
  }
  function select(element) {
    state.selected = descriptor(element);
    const s = state.selected;
    const layer = s.pass === 'weight' || s.pass === 'bias' ? null : DATA.layers[+s.layer];
    showDetail();
    if (layer && layer.kind === 'Linear' && wblocks[layer.index] && layer.unit_view && s.pass === 'forward') {
      // A unit's forward value: show that unit's weights in the weight panes too.
      state.units[layer.index] = s.pos.i;
      buildWeights(layer.index);
    }
  }

  // ------------------------------------------------------------ keyboard

  // Each block is one stop of the Tab key; inside it the arrow keys move
  // (PageUp/PageDown: the previous or next map), Enter or Space opens a value.
  let ready = false;   // every value element exists (see fillCells)
  function cellsOf(block) {
    if (!block.cells || !ready) block.cells = [...block.element.querySelectorAll('[data-pass]')];
    return block.cells;
  }
  function moveFocus(from, to) {
    if (!to || to === from) return;
    from.setAttribute('tabindex', '-1');
    to.setAttribute('tabindex', '0');
    to.focus();
  }
  document.addEventListener('keydown', (event) => {
    const element = event.target;
    if (!element.dataset || !element.dataset.pass) return;
    const blockElement = element.closest('.block');
    if (!blockElement || !blockElement.block) return;
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      select(element);
      return;
    }
    const block = blockElement.block, cells = cellsOf(block);
    const steps = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: block.row, ArrowUp: -block.row, PageDown: block.page, PageUp: -block.page };
    const step = steps[event.key];
    if (step === undefined && event.key !== 'Home' && event.key !== 'End') return;
    event.preventDefault();
    const here = cells.indexOf(element);
    const there = event.key === 'Home' ? 0 : event.key === 'End' ? cells.length - 1 : Math.max(0, Math.min(cells.length - 1, here + step));
    moveFocus(element, cells[there]);
  });
  document.addEventListener('click', (event) => {
    const element = event.target.closest('[data-pass]');
    if (!element || !element.closest('.block')) return;
    const blockElement = element.closest('.block');
    const current = blockElement.querySelector('[tabindex="0"]');
    if (current && current !== element) { current.setAttribute('tabindex', '-1'); element.setAttribute('tabindex', '0'); }
    select(element);
  });
  // A focused value says what it is to a screen reader.
  document.addEventListener('focusin', (event) => {
    const element = event.target;
    if (!element.dataset || !element.dataset.pass || element.getAttribute('aria-label')) return;
    const s = descriptor(element);
    element.setAttribute('aria-label', `${s.pass} value, layer ${s.layer}, ${posText(s.pos)}; Enter shows its formula`);
  });

  // ------------------------------------------------------------ controls

  const imageSelect = byId('image'), targetSelect = byId('target');
  function fillImages() {
    imageSelect.innerHTML = DATA.images.map((img, n) => {
      const predicted = CLASSES[img.predicted];
      const label = img.label === null || img.label === undefined ? `predicted ${predicted}`
        : `true ${CLASSES[img.label]}, predicted ${predicted} ${img.label === img.predicted ? '✓ right' : '✗ wrong'}`;
      return `<option value="${n}">${esc(img.name)}: ${esc(label)}</option>`;
    }).join('');
  }
  function fillTargets() {
    const img = image();
    targetSelect.innerHTML = CLASSES.map((name, k) => {
      const stored = img.targets.includes(k);
      const tags = [k === img.label ? 'true class' : '', k === img.predicted ? 'predicted' : '', stored ? '' : 'not in the page'].filter(Boolean);
      return `<option value="${k}"${stored ? '' : ' disabled'}>${k} ${esc(name)}${tags.length ? ` (${tags.join(', ')})` : ''}</option>`;
    }).join('');
    targetSelect.value = String(state.target);
  }
  function showLoss() {
    const b = backward();
    const p = forwardOf('output').data[state.target];
    byId('loss').textContent = b ? `loss E = −log p(target) = −log ${short(p)} = ${short(b.loss)}` : '';
  }
  function drawBackward() {
    for (const key of STAGES) drawStage(key, 'backward');
    for (const l of Object.keys(wblocks)) drawWeights(+l);
    showLoss();
  }
  function drawAll() {
    for (const key of STAGES) drawStage(key, 'forward');
    drawBackward();
  }
  imageSelect.addEventListener('change', () => {
    state.image = +imageSelect.value;
    state.target = defaultTarget(image());
    fillTargets();
    drawAll();
    showDetail();
  });
  targetSelect.addEventListener('change', () => {
    state.target = +targetSelect.value;
    drawBackward();
    showDetail();
  });
  document.addEventListener('change', (event) => {
    if (!event.target.matches('select.unit')) return;
    const l = +event.target.dataset.layer;
    state.units[l] = +event.target.value;
    buildWeights(l);
    const chooser = document.querySelector(`.wblock[data-wlayer="${l}"] select.unit`);
    if (chooser) chooser.focus();
  });

  function header() {
    const m = DATA.metadata || {};
    const accuracy = typeof m.test_accuracy === 'number' ? `; test accuracy ${(100 * m.test_accuracy).toFixed(2)}%` : '';
    byId('model-line').innerHTML = `${DATA.title ? `<b>${esc(DATA.title)}</b>: ` : ''}<code>${esc(DATA.spec)}</code>` +
      ` — ${CLASSES.length} classes${accuracy}${m.data ? `, trained on ${esc(m.data)}` : ''}`;
    byId('caps').textContent = `Caps: the page shows at most ${CAPS.channels} feature maps and ${CAPS.map_values.toLocaleString('en')} values per layer, ` +
      `${CAPS.units.toLocaleString('en')} entries per vector, and the weights of one unit at a time for a layer with more than ` +
      `${CAPS.weight_cells.toLocaleString('en')}; it holds the backward pass for ${DATA.stored_targets} of the ${CLASSES.length} target classes per image.`;
  }

  // ------------------------------------------------------------ playground

  const pg = {
    input: byId('pg-input'), kernel: byId('pg-kernel'), stride: byId('pg-stride'), padding: byId('pg-padding'),
    step: 0, timer: null,
  };
  function pgSettings() {
    const read = (element, low) => { const v = Math.round(Number(element.value)); return Number.isFinite(v) && v >= low ? v : null; };
    return { w1: read(pg.input, 1), f: read(pg.kernel, 1), s: read(pg.stride, 1), p: read(pg.padding, 0) };
  }
  function pgUpdate(keepStep) {
    const { w1, f, s, p } = pgSettings();
    const output = byId('pg-output'), formula = byId('pg-formula');
    const grid = byId('pg-grid'), outGrid = byId('pg-out-grid'), text = byId('pg-step-text');
    if (w1 === null || f === null || s === null || p === null) {
      formula.textContent = 'Give whole numbers: W1, F and S at least 1, P at least 0.';
      output.textContent = 'none'; output.dataset.value = '';
      grid.innerHTML = outGrid.innerHTML = text.textContent = '';
      return;
    }
    const padded = w1 + 2 * p;
    if (f > padded) {
      formula.textContent = `F = ${f} is larger than the padded input W1 + 2P = ${padded}: the kernel does not fit, there is no output.`;
      output.textContent = 'none'; output.dataset.value = '';
      grid.innerHTML = outGrid.innerHTML = text.textContent = '';
      return;
    }
    const span = w1 - f + 2 * p, w2 = Math.floor(span / s) + 1;
    const dropped = span % s;
    formula.textContent = `eq. 4.2: W2 = (W1 − F + 2P)/S + 1 = (${w1} − ${f} + 2·${p})/${s} + 1 = ${span}/${s} + 1 = ${w2}` +
      (dropped ? ` (${span}/${s} floors to ${Math.floor(span / s)}: the last ${plural(dropped, 'column')} no window reaches ${dropped === 1 ? 'is' : 'are'} dropped)` : '') +
      `; eq. 4.3 gives H2 = ${w2} for this square input.`;
    output.textContent = String(w2);
    output.dataset.value = String(w2);
    if (!keepStep) pg.step = 0;
    pg.step = Math.min(pg.step, w2 * w2 - 1);
    const i = Math.floor(pg.step / w2), j = pg.step % w2;
    text.textContent = `step ${pg.step + 1} of ${w2 * w2}: output (${i}, ${j}) reads padded rows ${i * s}…${i * s + f - 1}, columns ${j * s}…${j * s + f - 1}`;
    if (padded > 48) { grid.innerHTML = outGrid.innerHTML = ''; return; }
    let cells = '';
    for (let r = 0; r < padded; r++) {
      for (let c = 0; c < padded; c++) {
        const inWindow = r >= i * s && r < i * s + f && c >= j * s && c < j * s + f;
        const pad = r < p || c < p || r >= p + w1 || c >= p + w1;
        cells += `<span class="${inWindow ? 'win' : pad ? 'pad' : ''}"></span>`;
      }
    }
    grid.innerHTML = `<div class="pg" style="grid-template-columns:repeat(${padded},16px)">${cells}</div><p class="note">padded input (grey: padding)</p>`;
    let outs = '';
    for (let n = 0; n < w2 * w2; n++) outs += `<span class="${n === pg.step ? 'cur' : n < pg.step ? 'done' : ''}"></span>`;
    outGrid.innerHTML = `<div class="pg" style="grid-template-columns:repeat(${w2},16px)">${outs}</div><p class="note">output ${w2}×${w2}</p>`;
  }
  function pgMove(delta) {
    const output = byId('pg-output').dataset.value;
    if (!output) return;
    const count = Number(output) ** 2;
    pg.step = (pg.step + delta + count) % count;
    pgUpdate(true);
  }
  byId('zoom').addEventListener('change', () => { byId('network').style.setProperty('--zoom', byId('zoom').value); });
  // The detail panel sticks below the control bar, whatever its height.
  const placePanel = () => document.documentElement.style.setProperty('--bar', `${byId('controls').offsetHeight}px`);
  window.addEventListener('resize', placePanel);

  for (const element of [pg.input, pg.kernel, pg.stride, pg.padding]) element.addEventListener('input', () => pgUpdate(false));
  byId('pg-next').addEventListener('click', () => pgMove(1));
  byId('pg-prev').addEventListener('click', () => pgMove(-1));
  byId('pg-play').addEventListener('click', () => {
    const button = byId('pg-play');
    if (pg.timer) { clearInterval(pg.timer); pg.timer = null; button.textContent = 'play'; return; }
    button.textContent = 'pause';
    pg.timer = setInterval(() => pgMove(1), 600);
  });

  // ------------------------------------------------------------ start

  header();
  fillImages();
  state.target = defaultTarget(image());
  fillTargets();
  byId('network').innerHTML = STAGES.map(stageHtml).join('');
  for (const element of document.querySelectorAll('#network .block')) {
    const [key, pass] = element.dataset.block.split(':');
    registerBlock(element, key, pass);
  }
  const weighted = DATA.layers.filter((layer) => PARAMETER_KINDS.includes(layer.kind));
  byId('weight-blocks').innerHTML = weighted.map(weightBlockHtml).join('') ||
    '<p>This model has no layer with weights.</p>';
  for (const layer of weighted) {
    registerWeights(layer.index);
    const chooser = document.querySelector(`.wblock[data-wlayer="${layer.index}"] select.unit`);
    if (chooser) chooser.value = String(state.units[layer.index] || 0);
  }
  const built = performance.now();
  drawAll();
  pgUpdate(false);
  placePanel();
  window.exploreTimings = { start: started, decode: decoded - started, build: built - decoded, draw: performance.now() - built, total: performance.now() - started };

  // The maps are drawn; their clickable cells (over 100,000 for the default
  // model, most of the page's work) follow in slices of about 30 ms, so that
  // the page shows at once. When the last is in, <html data-ready="true">
  // tells scripts that every value element exists.
  const containers = document.querySelectorAll('#network .cells');
  let next = 0;
  function fillCells() {
    const until = performance.now() + 30;
    while (next < containers.length && performance.now() < until) {
      containers[next].innerHTML = laterCells[next]();
      next += 1;
    }
    if (next < containers.length) { setTimeout(fillCells, 0); return; }
    window.exploreTimings.ready = performance.now();
    ready = true;
    showDetail();
    document.documentElement.dataset.ready = 'true';
  }
  fillCells();
})();
