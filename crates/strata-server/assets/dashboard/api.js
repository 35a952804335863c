// The JSON API of `strata server`, with the bearer token the user signed in with.

/** An error reply of the API (`{code, message}`), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** Whether this server has no such endpoint (an older server): the panel says so. */
  get unavailable() {
    return this.status === 405 ||
      (this.status === 404 && /no such endpoint/i.test(this.message));
  }
}

/** A client of `/api/v1` that presents `token`. */
export class Api {
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, Accept: "application/json", ...extra };
  }

  /** Sends a request; resolves to `{data, headers}`, rejects with an ApiError. */
  async request(method, path, body) {
    const init = { method, headers: this.headers(), cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "unreachable", `cannot reach the server (${err.message})`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      const code = data && typeof data === "object" ? data.code : "failed";
      const message = data && typeof data === "object" && data.message
        ? data.message
        : `HTTP ${response.status}`;
      const error = new ApiError(response.status, code, message);
      if (response.status === 401 && this.onUnauthorized) this.onUnauthorized(error);
      throw error;
    }
    return { data, headers: response.headers };
  }

  async get(path) {
    return (await this.request("GET", path)).data;
  }

  /** A GET whose answer headers matter too (pages: `x-next-cursor`): `{data, headers}`. */
  async page(path) {
    return this.request("GET", path);
  }

  async post(path, body) {
    return (await this.request("POST", path, body ?? {})).data;
  }

  async patch(path, body) {
    return (await this.request("PATCH", path, body ?? {})).data;
  }

  async delete(path) {
    return (await this.request("DELETE", path)).data;
  }

  /**
   * Follows a server-sent event stream, calling `onEvent` with each event's JSON data.
   * EventSource cannot send an Authorization header, so the stream is read with fetch.
   * Resolves when the server ends the stream, rejects on errors; `signal` aborts it.
   */
  async stream(path, onEvent, signal) {
    let response;
    try {
      response = await fetch(path, {
        headers: this.headers({ Accept: "text/event-stream" }),
        cache: "no-store",
        signal,
      });
    } catch (err) {
      if (signal && signal.aborted) return;
      throw new ApiError(0, "unreachable", `event stream lost (${err.message})`);
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json()).message || message;
      } catch { /* not JSON */ }
      throw new ApiError(response.status, "failed", message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal && signal.aborted) return;
        throw new ApiError(0, "unreachable", `event stream lost (${err.message})`);
      }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  }
}
