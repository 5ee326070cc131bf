/** Small helpers over index.html: its elements by id, a template's parts, and problem messages. */
import { ApiError } from "./api.js";

export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) {
    throw new Error(`index.html has no #${id} of the expected kind`);
  }
  return element;
}

/** A copy of the one element a `<template>` holds. */
export function fromTemplate<T extends HTMLElement>(template: HTMLTemplateElement, type: new () => T): T {
  const element = template.content.firstElementChild?.cloneNode(true);
  if (!(element instanceof type)) {
    throw new Error(`#${template.id} must hold one ${type.name}`);
  }
  return element;
}

export function part<T extends HTMLElement = HTMLElement>(
  root: HTMLElement,
  selector: string,
  type: new () => T = HTMLElement as unknown as new () => T,
): T {
  const element = root.querySelector(selector);
  if (!(element instanceof type)) {
    throw new Error(`a ${root.tagName.toLowerCase()} from a template has no ${selector}`);
  }
  return element;
}

export function showProblem(where: HTMLElement, text: string | undefined): void {
  where.textContent = text ?? "";
  where.hidden = text === undefined;
}

/** What went wrong, for the user: the API's own sentence, or that the server is out of reach. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) {
    return error.message;
  }
  return "The server could not be reached: is `bankfeeds-bff dev` still running?";
}
