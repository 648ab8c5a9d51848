// What lies over a page image, in the image's own pixels (the layers are scaled with it):
// a text layer of the positioned words, transparent and selectable where each word stands;
// highlights (find hits, a search passage); and the page's links.
//
// Each word is a span at its box, its font sized to the box's height and stretched (scaleX) to
// its width, measured once on a canvas rather than by layout. Words of a line are followed by a
// space, lines by a <br>, so a selection copies as text reads.

import { el } from "./element.js";

const FONT = "sans-serif";
const LINK_SCHEMES = /^(https?:|mailto:)/i;
let measure = null;

function textWidth(text, size) {
  measure ??= document.createElement("canvas").getContext("2d");
  measure.font = `${size}px ${FONT}`;
  return measure.measureText(text).width;
}

/**
 * The text layer of `words` ([x0, y0, x1, y1, text, block, line]): a fragment of spans. A word
 * followed by another on its line carries the space between them and reaches to where the next
 * one starts, so a line's spans tile it: a selection that starts or ends at a word's edge takes
 * no character of its neighbour.
 */
export function textLayer(words) {
  const layer = document.createDocumentFragment();
  words.forEach((word, index) => {
    const [x0, y0, x1, y1, text, block, line] = word;
    const next = words[index + 1];
    const lineEnds = !next || next[5] !== block || next[6] !== line;
    const right = lineEnds || next[0] <= x1 ? x1 : next[0];
    const shown = lineEnds ? text : `${text} `;
    const height = Math.max(1, y1 - y0);
    const size = height * 0.86;
    const width = textWidth(shown, size);
    const span = el("span", { "data-i": index }, shown);
    span.style.left = `${x0}px`;
    span.style.top = `${y0 + (height - size) / 2}px`;
    span.style.fontSize = `${size}px`;
    if (width > 0) span.style.transform = `scaleX(${(right - x0) / width})`;
    layer.append(span);
    if (lineEnds) layer.append(el("br"));
  });
  return layer;
}

/** A highlight box over word boxes: [[x0, y0, x1, y1], ...] -> elements of class `kind`. */
export function highlights(boxes, kind) {
  return boxes.map(([x0, y0, x1, y1]) => {
    const mark = el("div", { class: `hl ${kind}` });
    Object.assign(mark.style, {
      left: `${x0}px`,
      top: `${y0}px`,
      width: `${x1 - x0}px`,
      height: `${y1 - y0}px`,
    });
    return mark;
  });
}

/**
 * The page's links as anchors over their boxes. Internal ones call `goTo(page)`; external ones
 * open in a new tab, only for http, https and mailto (the server drops others too).
 */
export function linkLayer(links, goTo) {
  return links
    .filter((link) => link.page || (link.uri && LINK_SCHEMES.test(link.uri)))
    .map((link) => {
      const internal = Boolean(link.page);
      const anchor = el("a", {
        class: `page-link ${internal ? "internal" : "external"}`,
        href: internal ? `#page=${link.page}` : link.uri,
        target: internal ? null : "_blank",
        rel: internal ? null : "noopener noreferrer nofollow",
        title: internal ? `Go to page ${link.page}` : link.uri,
        "aria-label": internal ? `Go to page ${link.page}` : `Open ${link.uri}`,
        "data-page": internal ? link.page : null,
      });
      Object.assign(anchor.style, {
        left: `${link.x0}px`,
        top: `${link.y0}px`,
        width: `${link.x1 - link.x0}px`,
        height: `${link.y1 - link.y0}px`,
      });
      if (internal) {
        anchor.addEventListener("click", (event) => {
          event.preventDefault();
          goTo(link.page);
        });
      }
      return anchor;
    });
}

/**
 * Where `query` (normalised: lower case, single spaces) occurs among `words`: one list of boxes
 * per hit, each box a word's (or the part of it the hit covers).
 */
export function findInWords(words, query) {
  if (!query) return [];
  // The words joined as find compares text, and where each word starts in it.
  const starts = [];
  let joined = "";
  for (const word of words) {
    if (joined) joined += " ";
    starts.push(joined.length);
    joined += word[4].toLowerCase();
  }
  const hits = [];
  for (let at = joined.indexOf(query); at !== -1; at = joined.indexOf(query, at + query.length)) {
    hits.push(boxesOf(words, starts, at, at + query.length));
  }
  return hits;
}

function boxesOf(words, starts, from, to) {
  const boxes = [];
  for (let i = 0; i < words.length; i += 1) {
    const start = starts[i];
    const text = words[i][4];
    const end = start + text.length;
    if (end <= from || start >= to) continue;
    const [x0, y0, x1, y1] = words[i];
    const share = (x1 - x0) / Math.max(1, text.length);
    const left = Math.max(from, start) - start;
    const right = Math.min(to, end) - start;
    boxes.push([x0 + Math.floor(left * share), y0, x0 + Math.ceil(right * share), y1]);
  }
  return boxes;
}

const token = (text) => text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");

/**
 * The words of a search passage found on this page: where a run of its words (up to 6) appears,
 * followed for as long as the page and the passage go on together (a word or two that differ, a
 * hyphenation, are stepped over). Of every place a run matches (a sentence repeated on every page
 * matches in many), the longest stretch. Boxes of the words, [] when it is not here.
 */
export function passageBoxes(words, passage) {
  const wanted = passage.split(/\s+/).map(token).filter(Boolean);
  const have = words.map((word) => token(word[4]));
  if (!wanted.length || !have.length) return [];
  const run = Math.min(6, wanted.length, have.length);
  let best = [];
  for (let skip = 0; skip + run <= wanted.length; skip += 1) {
    for (let i = 0; i + run <= have.length; i += 1) {
      let same = 0;
      while (same < run && have[i + same] === wanted[skip + same]) same += 1;
      if (same < run) continue;
      const boxes = follow(words, have, wanted, i, skip);
      if (boxes.length > best.length) best = boxes;
    }
  }
  return best;
}

function follow(words, have, wanted, start, skip) {
  const boxes = [];
  let a = start;
  let b = skip;
  let misses = 0;
  while (a < have.length && b < wanted.length && misses <= 3) {
    if (have[a] === wanted[b] || !have[a]) {
      if (have[a]) boxes.push(words[a].slice(0, 4));
      a += 1;
      b += 1;
      misses = 0;
    } else if (have[a + 1] === wanted[b]) a += 1; // a word here, not in the passage
    else if (have[a] === wanted[b + 1]) b += 1; // a word of the passage, not here
    else {
      misses += 1;
      a += 1;
      b += 1;
    }
  }
  return boxes;
}
