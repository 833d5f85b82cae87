/**
 * Building the page's DOM without ever parsing markup: every string becomes a text node or an
 * attribute value, so a guest's comm or path containing HTML is shown as text, never run.
 *
 * @module
 */

const SVG = "http://www.w3.org/2000/svg";

/**
 * Sets `props` on `element`: `class`, `dataset` (an object), event listeners (`onclick` with a
 * function), and anything else as an attribute (`true` sets it empty; `false`, `null` and
 * `undefined` leave it out).
 */
function assign(element, props) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`Cannot set "${key}": not a function`);
      element.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "class") {
      element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** Appends `children` (nodes, strings and numbers as text; arrays flattened; nullish skipped). */
function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * An HTML element: `h("td", { class: "pid" }, 1234)`.
 * @param {string} tag
 * @param {Record<string, unknown> | null} [props]
 * @param {...unknown} children
 * @returns {HTMLElement}
 */
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  assign(element, props);
  append(element, children);
  return element;
}

/**
 * An SVG element, as {@linkcode h}.
 * @param {string} tag
 * @param {Record<string, unknown> | null} [props]
 * @param {...unknown} children
 * @returns {SVGElement}
 */
export function s(tag, props, ...children) {
  const element = document.createElementNS(SVG, tag);
  assign(element, props);
  append(element, children);
  return element;
}

/** Replaces the children of `element` with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}
