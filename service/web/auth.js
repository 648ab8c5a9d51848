// Signing in. In production: the Firebase Web SDK (from Google's CDN, with the config the server
// gives at /config.json). In development (the API in emulator mode, which accepts unsigned
// tokens): a development token for a user name, made here in the format of devstack/token.py.

const FIREBASE_SDK = "https://www.gstatic.com/firebasejs/10.14.1";
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

  signOut() {
    this.user = null;
    sessionStorage.removeItem(DEV_USER_KEY);
  }

  async getToken() {
    if (!this.user) throw new Error("Not signed in");
    return devToken(this.user, this.projectId);
  }
}

/**
 * Production sign-in with the Firebase Web SDK. `onChange(userLabel | null)` is called whenever
 * the signed-in user changes (Firebase keeps the session across reloads).
 */
export class FirebaseAuth {
  static async create(config, onChange) {
    const app = await import(`${FIREBASE_SDK}/firebase-app.js`);
    const sdk = await import(`${FIREBASE_SDK}/firebase-auth.js`);
    const auth = sdk.getAuth(app.initializeApp(config));
    const wrapper = new FirebaseAuth(sdk, auth);
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

  signOut() {
    return this.sdk.signOut(this.auth);
  }

  async getToken() {
    const user = this.auth.currentUser;
    if (!user) throw new Error("Not signed in");
    return user.getIdToken(); // refreshed by the SDK when it nears expiry
  }
}
