// Building DOM nodes. Every string becomes a text node: nothing from the server is ever parsed
// as HTML (file names and PDF titles can contain markup).

/**
 * el("button", {class: "x", type: "button", onclick: f}, "Cancel") -> <button class="x">Cancel</button>
 * Attributes named on* are listeners; `null`/`undefined`/`false` attributes are left out.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append children: nodes as they are, anything else as text. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace everything inside `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** Set the text of the element with this id (a no-op when it is absent). */
export function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}
