// Signing in. In production: the Firebase Web SDK, served by this API from the npm package it
// installed (/web/vendor/, no CDN), with the config the server gives at /config.json; email and
// password (sign up or sign in) or Google. When the API runs in emulator mode with a web API key,
// the SDK signs in against the Firebase Auth Emulator instead. In development (emulator mode):
// also a development token for a user name, made here in the format of devstack/token.py.

const SDK = "/web/vendor";
const DEV_USER_KEY = "pcj.devUser";
export const DEV_USER_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An unsigned (alg: none) ID token for `userId`: accepted only by an API in emulator mode. */
export function devToken(userId, projectId, lifetimeS = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: `https://securetoken.google.com/${projectId}`,
    aud: projectId,
    auth_time: now,
    user_id: userId,
    sub: userId,
    iat: now,
    exp: now + lifetimeS,
    firebase: { identities: {}, sign_in_provider: "custom" },
  };
  return `${base64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${base64url(JSON.stringify(claims))}.`;
}

/** The development session: a user name kept for this tab. */
export class DevAuth {
  constructor(projectId) {
    this.projectId = projectId;
    this.user = sessionStorage.getItem(DEV_USER_KEY);
  }

  signIn(userId) {
    if (!DEV_USER_PATTERN.test(userId)) {
      throw new Error("A user name is 1 to 64 letters, digits, dots, dashes or underscores");
    }
    this.user = userId;
    sessionStorage.setItem(DEV_USER_KEY, userId);
  }

  async signOut() {
    this.user = null;
    sessionStorage.removeItem(DEV_USER_KEY);
  }

  async getToken() {
    if (!this.user) throw new Error("Not signed in");
    return devToken(this.user, this.projectId);
  }
}

/** What the page did with Firebase tokens, for people and tests (window.pcj.auth). */
export const authStats = { tokensRefreshed: 0 };

/**
 * Sign-in with the Firebase Web SDK. `onChange(userLabel | null)` is called whenever the
 * signed-in user changes (Firebase keeps the session across reloads).
 */
export class FirebaseAuth {
  static async create(config, emulatorUrl, onChange) {
    const app = await import(`${SDK}/firebase-app.js`);
    const sdk = await import(`${SDK}/firebase-auth.js`);
    const auth = sdk.getAuth(app.initializeApp(config));
    if (emulatorUrl) sdk.connectAuthEmulator(auth, emulatorUrl, { disableWarnings: true });
    const wrapper = new FirebaseAuth(sdk, auth);
    await auth.authStateReady();
    sdk.onAuthStateChanged(auth, (user) => onChange(user ? user.email || user.uid : null));
    return wrapper;
  }

  constructor(sdk, auth) {
    this.sdk = sdk;
    this.auth = auth;
  }

  get user() {
    const user = this.auth.currentUser;
    return user ? user.email || user.uid : null;
  }

  signInWithGoogle() {
    return this.sdk.signInWithPopup(this.auth, new this.sdk.GoogleAuthProvider());
  }

  signInWithPassword(email, password) {
    return this.sdk.signInWithEmailAndPassword(this.auth, email, password);
  }

  signUp(email, password) {
    return this.sdk.createUserWithEmailAndPassword(this.auth, email, password);
  }

  signOut() {
    return this.sdk.signOut(this.auth);
  }

  /** The current ID token; the SDK refreshes it when it nears expiry, `force` at once. */
  async getToken(force = false) {
    const user = this.auth.currentUser;
    if (!user) throw new Error("Not signed in");
    if (force) authStats.tokensRefreshed += 1;
    return user.getIdToken(force);
  }
}
