// The API, as the page calls it: JSON requests with the signed-in user's ID token, errors as
// ApiError (status 0: the API could not be reached), and uploads with upload progress.

export const JOBS = "/api/v1/books/jobs";

export class ApiError extends Error {
  constructor(status, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.retryAfterS = retryAfterS;
  }

  /** The API is not there: no answer, or a proxy saying so (502/503/504). */
  get unreachable() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

/** An error's message, for a person. */
export function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

function retryAfterOf(headers) {
  const value = Number.parseInt(headers.get("retry-after") ?? "", 10);
  return Number.isFinite(value) && value >= 0 ? value : null;
}

/** The message of an error body: {"detail": ...} or seed 004's {"error": {"message"}}. */
function messageOf(status, body) {
  if (body && typeof body === "object") {
    if (typeof body.detail === "string") return body.detail;
    if (body.detail !== undefined) return JSON.stringify(body.detail);
    if (body.error && typeof body.error.message === "string") return body.error.message;
  }
  return status ? `HTTP ${status}` : "Cannot reach the API";
}

function parse(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null; // an HTML error page from something in between
  }
}

export class Api {
  /**
   * `getToken(force)` resolves to the current Firebase ID token (or a development token);
   * `force`: a fresh one, after the API refused the last (it expired while the tab was open).
   */
  constructor(getToken) {
    this.getToken = getToken;
  }

  async headers(extra = {}, force = false) {
    return { Authorization: `Bearer ${await this.getToken(force)}`, ...extra };
  }

  /**
   * One request; resolves to {status, body, headers} for 2xx and 304, throws ApiError otherwise.
   * A 401 is tried once more with a freshly refreshed token.
   */
  async request(method, path, options = {}, retried = false) {
    try {
      return await this.send(method, path, options, retried);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && !retried) {
        return this.request(method, path, options, true);
      }
      throw error;
    }
  }

  async send(method, path, { json, headers = {}, cache = "no-store" } = {}, force = false) {
    const init = { method, headers: await this.headers(headers, force), cache };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, "Cannot reach the API");
    }
    const body = parse(await response.text().catch(() => ""));
    if (response.ok || response.status === 304) {
      return { status: response.status, body, headers: response.headers };
    }
    throw new ApiError(response.status, messageOf(response.status, body), retryAfterOf(response.headers));
  }

  get(path, options) {
    return this.request("GET", path, options);
  }

  /** A GET the browser's cache may answer after revalidating (the answer has an ETag). */
  getCached(path) {
    return this.request("GET", path, { cache: "no-cache" });
  }

  post(path, options) {
    return this.request("POST", path, options);
  }

  delete(path, options) {
    return this.request("DELETE", path, options);
  }

  /**
   * Upload `file` and create its job in one multipart request (POST /api/v1/books/jobs).
   * XMLHttpRequest, not fetch: only it reports upload progress. Resolves to the job's JSON.
   */
  async createJob(bookId, file, onProgress) {
    const headers = await this.headers({ "Idempotency-Key": randomId() });
    const form = new FormData();
    form.append("book_id", bookId);
    form.append("file", file, file.name);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${JOBS}/`);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      };
      xhr.onload = () => {
        const body = parse(xhr.responseText);
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else {
          const retry = Number.parseInt(xhr.getResponseHeader("retry-after") ?? "", 10);
          reject(new ApiError(xhr.status, messageOf(xhr.status, body), Number.isFinite(retry) ? retry : null));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, "Cannot reach the API"));
      xhr.send(form);
    });
  }
}

/** A random id (for Idempotency-Key). */
export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
