// The page: sign in, upload a PDF (with upload progress), watch its job become a chapter
// (progress and pages pushed over the event stream, or polled), search the chapters, list my
// jobs; and the reader, at its own URL (/books/{book_id}/chapters/{chapter_id}#page=N).
//
// Start-up hook: `/?stall_after_s=N` lowers how long the page waits without progress before it
// says the job is not moving (STALL_AFTER_S in watch.js, 20 s); the browser tests use it.

import { Api, ApiError, JOBS, describe } from "./api.js";
import { DevAuth, FirebaseAuth, authStats } from "./auth.js";
import { replace, setText } from "./element.js";
import { JobList, jobMessage, jobName, readable } from "./jobs.js";
import { Reader, hashState, readerPath, readerRoute, readerStats } from "./reader.js";
import { SearchPanel, forgetPassages } from "./search.js";
import { LivePages } from "./viewer.js";
import { JobWatch, STALL_AFTER_S, TERMINAL, stats } from "./watch.js";

const $ = (id) => document.getElementById(id);
const BOOK_KEY = "pcj.book";
const KEPT_ON_SIGN_OUT = "pcj.prefs."; // the reader's zoom: not the user's data

const page = {
  config: null,
  auth: null, // whichever signed the user in: DevAuth or FirebaseAuth
  firebase: null,
  dev: null,
  api: null,
  jobs: null,
  watch: null,
  live: null,
  job: null, // the job on screen
  screen: 0, // bumped whenever the job on screen changes: late answers for an older one are dropped
  stallAfterS: stallAfterS(),
  reader: null,
  search: null,
  listed: false, // "My jobs" was read since sign-in
};
// What the page did, for people and tests: following jobs, the reader, tokens.
window.pcj = {
  stats,
  reader: readerStats,
  auth: authStats,
  refreshToken: () => page.auth?.getToken(true),
};

function showError(message) {
  $("error").hidden = !message;
  setText("error", message ?? "");
}

/** STALL_AFTER_S, or the `stall_after_s` query parameter when it is a positive number. */
function stallAfterS() {
  const value = Number(new URLSearchParams(window.location.search).get("stall_after_s"));
  return Number.isFinite(value) && value > 0 ? value : STALL_AFTER_S;
}

function showNotice(message) {
  $("notice").hidden = !message;
  setText("notice", message ?? "");
}

// ---- signing in ---------------------------------------------------------------------------

async function start() {
  const response = await fetch("/config.json", { cache: "no-store" });
  page.config = await response.json();
  $("loading").hidden = true;
  const config = page.config;
  if (!config.dev_sign_in && !config.firebase) {
    $("sign-in").hidden = false;
    $("no-sign-in").hidden = false;
    return;
  }
  if (config.dev_sign_in) {
    page.dev = new DevAuth(config.firebase_project_id);
    $("dev-sign-in").hidden = false;
  }
  if (config.firebase && !config.firebase_sdk) $("no-sdk").hidden = false;
  else if (config.firebase) {
    $("firebase-sign-in").hidden = false;
    $("google-sign-in").hidden = Boolean(config.firebase_emulator_url);
    try {
      page.firebase = await FirebaseAuth.create(config.firebase, config.firebase_emulator_url, (user) => {
        if (user) signedIn(page.firebase, user);
        else if (page.auth === page.firebase) signedOut();
      });
    } catch (error) {
      showError(`Could not load Firebase sign-in: ${describe(error)}`);
    }
  }
  if (page.dev?.user && !page.auth) signedIn(page.dev, page.dev.user);
  else if (!page.auth) $("sign-in").hidden = false;
}

function signedIn(auth, user) {
  if (page.auth === auth && page.api) return; // the same session (Firebase says so again)
  clearScreen(); // nothing of whoever used this page before
  page.auth = auth;
  page.api = new Api((force) => auth.getToken(force));
  page.jobs = new JobList(page.api, $("job-list"), {
    open: openJob,
    read: readJob,
    cancel: cancelJob,
    remove: deleteJob,
  });
  page.search = new SearchPanel(
    page.api,
    { form: $("search-form"), input: $("search-input"), results: $("search-results"), status: $("search-status") },
    { scope: () => ({}), onOpen: openResult },
  );
  page.reader ??= new Reader(
    page.api,
    {
      close: () => navigate("/"),
      deleted: chapterDeleted,
      error: showError,
      open: openResult,
    },
    { pageDpi: page.config.page_dpi ?? 150 },
  );
  page.reader.api = page.api;
  page.reader.search.api = page.api;
  $("sign-in").hidden = true;
  $("who").hidden = false;
  setText("who-name", user);
  route();
}

function signedOut() {
  clearScreen();
  page.auth = null;
  page.api = null;
  $("app").hidden = true;
  $("who").hidden = true;
  setText("who-name", "");
  $("sign-in").hidden = false;
  forgetUser();
  // The next user must not land in this user's chapter.
  if (readerRoute(location.pathname)) history.replaceState(null, "", "/");
}

/** Everything this page kept of the user in the browser's storage, gone (sign-out). */
function forgetUser() {
  for (const storage of [localStorage, sessionStorage]) {
    for (const key of Object.keys(storage)) {
      if (key.startsWith("pcj.") && !key.startsWith(KEPT_ON_SIGN_OUT)) storage.removeItem(key);
    }
  }
  forgetPassages();
  $("book-id").value = "my-book";
  $("email").value = "";
  $("password").value = "";
}

/**
 * Take the signed-in user's things off the page: the job on screen (its watch stopped and its
 * stream closed), its pages, the reader, the upload's progress, search results, the job list.
 */
function clearScreen() {
  stopWatching();
  page.job = null;
  page.screen += 1;
  page.jobs?.close();
  page.jobs = null;
  page.listed = false;
  page.search?.clear();
  page.reader?.close();
  $("job").hidden = true;
  const texts = ["job-name", "job-status", "job-percent", "job-message", "connection"];
  for (const id of [...texts, "upload-text"]) setText(id, "");
  $("job-progress").value = 0;
  replace($("live-pages"));
  hideUploadBar();
  $("file").value = "";
  showNotice(null);
  showError(null);
}

$("dev-sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  try {
    page.dev.signIn($("dev-user").value.trim());
    signedIn(page.dev, page.dev.user);
  } catch (error) {
    showError(describe(error));
  }
});

$("google-sign-in").addEventListener("click", () =>
  page.firebase?.signInWithGoogle().catch((error) => showError(describe(error))),
);

$("password-sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  showError(null);
  page.firebase
    ?.signInWithPassword($("email").value, $("password").value)
    .catch((error) => showError(`Could not sign in: ${describe(error)}`));
});

$("sign-up").addEventListener("click", () => {
  const form = $("password-sign-in");
  if (!form.reportValidity()) return;
  showError(null);
  page.firebase
    ?.signUp($("email").value, $("password").value)
    .catch((error) => showError(`Could not create the account: ${describe(error)}`));
});

$("sign-out").addEventListener("click", async () => {
  const auth = page.auth;
  signedOut(); // at once: nothing of the user stays on screen while the SDK signs out
  await auth?.signOut();
});

// ---- where the page is: home or the reader -------------------------------------------------

function navigate(path) {
  if (path !== location.pathname + location.hash) history.pushState(null, "", path);
  route();
}

/** Show what the URL names: the reader at a chapter, or the home page. */
function route() {
  if (!page.api) return;
  const chapter = readerRoute(location.pathname);
  if (chapter) {
    $("app").hidden = true;
    const { page: number, passage } = hashState(location.hash);
    page.reader.open(chapter.bookId, chapter.chapterId, { page: number, passage });
    return;
  }
  page.reader.close();
  document.title = "PDF chapters";
  $("app").hidden = false;
  if (!page.listed) {
    page.listed = true;
    refreshJobs().then(resumeWatching);
  }
}

window.addEventListener("popstate", () => route());

$("home-link").addEventListener("click", (event) => {
  event.preventDefault();
  navigate("/");
});

/** A search result: the reader at its page, with its passage highlighted. */
function openResult(result) {
  const path = readerPath(result.book_id, result.chapter_id);
  const number = result.open_page ?? result.page_number;
  navigate(`${path}#page=${number}&passage=${encodeURIComponent(result.chunk_id)}`);
}

async function chapterDeleted(chapter) {
  navigate("/");
  showNotice(`Deleted the chapter "${chapter.title}".`);
  if (page.job?.job_id === chapter.job_id) {
    try {
      const { body } = await page.api.get(`${JOBS}/${encodeURIComponent(chapter.job_id)}`);
      page.job = body;
      showState(body);
    } catch {
      // the list below says it too
    }
  }
  refreshJobs();
}

// ---- uploading ----------------------------------------------------------------------------

function hideUploadBar() {
  $("upload-progress").hidden = true;
  $("upload-progress").value = 0;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  const file = $("file").files[0];
  const bookId = $("book-id").value.trim();
  if (!file) {
    showError("Choose a PDF first");
    return;
  }
  localStorage.setItem(BOOK_KEY, bookId);
  showNotice(null);
  $("upload-button").disabled = true;
  $("upload-progress").value = 0;
  $("upload-progress").hidden = false;
  setText("upload-text", `Uploading ${file.name}`);
  try {
    const job = await page.api.createJob(bookId, file, (loaded, total) => {
      const percent = Math.floor((loaded / total) * 100);
      $("upload-progress").value = percent;
      setText("upload-text", `Uploading ${file.name}: ${percent}%`);
    });
    $("upload-progress").value = 100;
    setText("upload-text", `Uploaded ${file.name}`);
    $("file").value = "";
    watchJob(job);
    refreshJobs();
  } catch (error) {
    hideUploadBar(); // refused: nothing was uploaded, whatever the bar had reached
    setText("upload-text", "");
    showError(`Upload failed: ${describe(error)}`);
  } finally {
    $("upload-button").disabled = false;
  }
});

// ---- the job on screen --------------------------------------------------------------------

function stopWatching() {
  page.watch?.stop();
  page.live?.stop();
  page.watch = null;
  page.live = null;
  showStall(null);
}

function watchJob(job) {
  stopWatching();
  page.job = job;
  page.screen += 1;
  $("job").hidden = false;
  $("live-pages").hidden = false;
  setText("job-name", jobName(job));
  setText("connection", "");
  page.live = new LivePages(page.api, job.job_id, $("live-pages"));
  showState(job);
  if (TERMINAL.has(job.status)) return;
  const watch = new JobWatch(
    page.api,
    job.job_id,
    {
      onState: (state, via) => {
        page.job = state;
        showState(state);
        if (via === "poll") page.live?.refreshSoon();
        page.jobs?.update(state);
      },
      onPage: (event) => page.live?.notify(event),
      onConnection: (text) => setText("connection", text),
      onError: (message) => showError(message),
      onStall: (stalled, state) => showStall(stalled ? (state ?? page.job) : null),
    },
    { pollIntervalS: page.config.poll_interval_s, stallAfterS: page.stallAfterS },
  );
  page.watch = watch;
  watch.start();
}

/** Say why the count froze (no progress for a while), or take the note away (`job` null). */
function showStall(job) {
  let text = "";
  if (job) {
    const waiting =
      job.status === "pending"
        ? "waiting for a worker to start the job..."
        : "waiting for a worker to pick the job up again...";
    text = `No progress for ${page.stallAfterS} s: ${waiting}`;
  }
  $("stall").hidden = !text;
  setText("stall", text);
}

function showState(job) {
  const ended = job.status === "failed" || job.status === "cancelled";
  setText("job-status", job.chapter_deleted_at ? "completed, chapter deleted" : job.status);
  // A failed or cancelled job's bar would show where it stopped as if it were progress.
  $("job-progress").hidden = ended;
  $("job-progress").value = ended ? 0 : job.progress;
  setText("job-percent", ended ? "" : `${job.progress}%`);
  setText("job-message", jobMessage(job));
  $("cancel").hidden = TERMINAL.has(job.status);
  $("job-read").hidden = !readable(job);
  if (job.status === "completed") {
    page.live?.stop();
    $("live-pages").hidden = true;
  } else if (ended) {
    // The service discarded the pages of a job that did not finish: so does the page.
    page.live?.clear();
    replace($("live-pages"));
    $("live-pages").hidden = true;
  }
}

$("job-read").addEventListener("click", () => page.job && readJob(page.job));

function readJob(job) {
  showError(null);
  showNotice(null);
  navigate(readerPath(job.book_id, job.result.chapter_id));
}

function openJob(job) {
  showError(null);
  showNotice(null);
  watchJob(job);
  $("job").scrollIntoView({ block: "start" });
}

async function cancelJob(job) {
  showError(null);
  try {
    const { body } = await page.api.post(`${JOBS}/${encodeURIComponent(job.job_id)}/cancel`);
    if (page.job?.job_id === job.job_id) {
      stopWatching();
      page.job = body;
      showState(body);
      setText("connection", "");
    }
  } catch (error) {
    showError(`Could not cancel: ${describe(error)}`);
  }
  refreshJobs();
}

/** "Delete" in My jobs (a finished job): the job's record only. */
async function deleteJob(job) {
  const name = jobName(job);
  let kept;
  if (job.status !== "completed") {
    kept = `It made no chapter: its pages were discarded when it was ${job.status}.`;
  } else if (job.chapter_deleted_at) {
    kept = "Its chapter was already deleted.";
  } else {
    kept = "Its chapter stays (delete that from the reader: About, then Delete chapter).";
  }
  const question =
    `Delete ${name} from My jobs?\n\n` +
    `Only the job's record is deleted. ${kept} The uploaded PDF is kept.`;
  if (!window.confirm(question)) return;
  showError(null);
  try {
    await page.api.delete(`${JOBS}/${encodeURIComponent(job.job_id)}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      showError(`Could not delete the job: ${describe(error)}`);
      return;
    }
  }
  page.jobs?.drop(job.job_id);
  if (page.job?.job_id === job.job_id) {
    stopWatching();
    page.job = null;
    page.screen += 1;
    $("job").hidden = true;
  }
  showNotice(`Deleted ${name} from My jobs.`);
}

$("cancel").addEventListener("click", () => page.job && cancelJob(page.job));

/** After a (re)load: follow the newest job still running, unless one is on screen already. */
function resumeWatching(jobs) {
  const running = jobs?.find((job) => !TERMINAL.has(job.status));
  if (running && !page.job) watchJob(running);
}

/** Read the list again; resolves to its jobs (null when it was not shown, or failed). */
function refreshJobs() {
  const jobs = page.jobs;
  if (!jobs) return Promise.resolve(null);
  return jobs.load().catch((error) => {
    if (jobs === page.jobs) showError(`Could not list jobs: ${describe(error)}`);
    return null;
  });
}

$("refresh-jobs").addEventListener("click", () => refreshJobs());

$("book-id").value = localStorage.getItem(BOOK_KEY) || "my-book";

start().catch((error) => {
  $("loading").hidden = true;
  showError(`Could not start: ${describe(error)}`);
});
