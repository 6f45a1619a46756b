// The demo phone: registers through the app API, keeps a push stream open, shows incoming calls.
// Plain browser JavaScript on purpose (no build step, no dependencies): the page ships inside the package.
(function () {
  "use strict";

  var STORAGE_KEY = "callerid.phone.registration";
  // Close codes sent by the server (see /app/v1/stream in the API docs).
  var CLOSE_DEVICE_GONE = 4001;
  var CLOSE_UNAUTHORIZED = 4401;
  var BACKOFF_FIRST_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var RECENT_CALLS_KEPT = 10;
  // A call nobody answers or declines is missed after this long (or at once with "Let it ring").
  var RING_TIMEOUT_MS = 30000;
  // Call signals (POST /app/v1/call-signals) that could not be sent are tried again after this long.
  var SIGNAL_RETRY_MS = 5000;
  var SIGNALS_PER_REQUEST = 50;

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    connection: $("connection"),
    connectionText: $("connection-text"),
    registerForm: $("register-form"),
    phoneNumber: $("phone-number"),
    platform: $("platform"),
    appVersion: $("app-version"),
    register: $("register"),
    registerError: $("register-error"),
    verifyForm: $("verify-form"),
    verifyNumber: $("verify-number"),
    demoSms: $("demo-sms"),
    demoSmsCode: $("demo-sms-code"),
    code: $("code"),
    codeHint: $("code-hint"),
    verify: $("verify"),
    verifyError: $("verify-error"),
    verifyStatus: $("verify-status"),
    resend: $("resend"),
    restart: $("restart"),
    registered: $("registered"),
    registeredNumber: $("registered-number"),
    registeredDetails: $("registered-details"),
    forget: $("forget"),
    forgetError: $("forget-error"),
    simulateForm: $("simulate-form"),
    callerNumber: $("caller-number"),
    simulateCall: $("simulate-call"),
    simulateError: $("simulate-error"),
    simulateNeedsRegistration: $("simulate-needs-registration"),
    recentCalls: $("recent-calls"),
    noCalls: $("no-calls"),
    announcer: $("call-announcer"),
    call: $("incoming-call"),
    callLogo: $("call-logo"),
    callLogoFallback: $("call-logo-fallback"),
    callName: $("call-name"),
    callVerified: $("call-verified"),
    callReason: $("call-reason"),
    callNumber: $("call-number"),
    callWindow: $("call-window"),
    callKind: $("call-kind"),
    answer: $("answer"),
    decline: $("decline"),
    letRing: $("let-ring"),
    hangUp: $("hang-up"),
    statusBar: document.querySelector(".status-bar"),
    screen: document.querySelector(".screen"),
  };

  var registration = null; // {device_id, device_token, phone_number, platform, app_version}
  // A registration waiting for its SMS code: {registration_id, phone_number, platform, app_version}.
  var pending = null;
  var socket = null;
  var reconnectTimer = null;
  var countdownTimer = null;
  var failures = 0; // consecutive connection attempts that ended without a working stream
  var currentCall = null;
  var focusBeforeCall = null;
  var ringTimer = null;
  var talkTimer = null;
  // Call signals not yet taken by the server, oldest first; one request at a time.
  var signalQueue = [];
  var signalsInFlight = false;
  var signalRetryTimer = null;

  // --- storage -----------------------------------------------------------------------------------------

  function loadRegistration() {
    try {
      var saved = JSON.parse(window.localStorage.getItem(STORAGE_KEY) || "null");
      return saved && typeof saved.device_token === "string" ? saved : null;
    } catch (e) {
      return null; // unreadable or blocked storage: behave as a fresh phone
    }
  }

  function saveRegistration(value) {
    try {
      if (value) window.localStorage.setItem(STORAGE_KEY, JSON.stringify(value));
      else window.localStorage.removeItem(STORAGE_KEY);
    } catch (e) {
      // storage blocked (private mode): the registration still works until the page is closed
    }
  }

  // --- small helpers -----------------------------------------------------------------------------------

  function displayNumber(digits) {
    return digits ? "+" + String(digits).replace(/^\+/, "") : "";
  }

  function errorMessage(body, status) {
    if (body && typeof body.message === "string") return body.message;
    return "The server answered " + status + ".";
  }

  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (registration) headers.Authorization = "Bearer " + registration.device_token;
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    }).then(function (response) {
      if (response.status === 204) return { status: 204, body: null };
      return response.json().then(
        function (json) { return { status: response.status, body: json }; },
        function () { return { status: response.status, body: null }; }
      );
    });
  }

  function setConnection(state, text) {
    els.connection.dataset.state = state;
    els.connectionText.textContent = text;
  }

  function formatTime(ms) {
    var date = new Date(ms);
    if (isNaN(date.getTime())) return "";
    // Today's times need no date: the short form fits on one line at phone width.
    if (date.toDateString() === new Date().toDateString()) {
      return date.toLocaleTimeString([], { timeStyle: "short" });
    }
    return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }

  function formatWindow(startsAt, endsAt) {
    var from = formatTime(startsAt);
    var to = formatTime(endsAt);
    return from && to ? "Expected " + from + " \u2013 " + to : "";
  }

  // --- registration ------------------------------------------------------------------------------------

  function showRegistration() {
    var registered = registration !== null;
    var waiting = !registered && pending !== null;
    els.registerForm.hidden = registered || waiting;
    els.verifyForm.hidden = !waiting;
    els.registered.hidden = !registered;
    els.simulateCall.disabled = !registered;
    els.simulateNeedsRegistration.hidden = registered;
    if (registered) {
      els.registeredNumber.textContent = displayNumber(registration.phone_number);
      els.registeredDetails.textContent =
        "(" + (registration.platform === "ios" ? "iOS" : "Android") + ", app " + registration.app_version + ")";
    }
  }

  function register(event) {
    event.preventDefault();
    els.registerError.textContent = "";
    var request = {
      phone_number: els.phoneNumber.value.trim(),
      platform: els.platform.value,
      app_version: els.appVersion.value.trim(),
    };
    if (!request.phone_number) {
      els.registerError.textContent = "Enter this phone's number.";
      els.phoneNumber.focus();
      return;
    }
    els.register.disabled = true;
    registration = null; // a new registration never sends an old token
    pending = null;
    api("POST", "/app/v1/devices", request)
      .then(function (result) {
        if (result.status === 202 && result.body) {
          // The server sent a code to the number: the phone proves it owns the number by sending it back.
          pending = {
            registration_id: result.body.registration_id,
            phone_number: request.phone_number,
            platform: request.platform,
            app_version: request.app_version,
          };
          els.code.value = "";
          els.verifyError.textContent = "";
          els.verifyStatus.textContent = "";
          els.verifyNumber.textContent = displayNumber(request.phone_number.replace(/[^0-9]/g, ""));
          showCodeSent(result.body);
          showRegistration();
          setConnection("idle", "Waiting for the SMS code");
          els.code.focus();
          return;
        }
        if (result.status !== 201) {
          els.registerError.textContent = errorMessage(result.body, result.status);
          return;
        }
        becomeRegistered(result.body, request);
      })
      .catch(function () {
        els.registerError.textContent = "Cannot reach the server. Check the connection and try again.";
      })
      .then(function () { els.register.disabled = false; });
  }

  function becomeRegistered(device, request) {
    registration = {
      device_id: device.device_id,
      device_token: device.device_token,
      phone_number: request.phone_number,
      platform: request.platform,
      app_version: request.app_version,
    };
    pending = null;
    saveRegistration(registration);
    showRegistration();
    failures = 0;
    connect();
  }

  function showCodeSent(answer) {
    var until = answer.expires_at ? formatTime(Date.parse(answer.expires_at)) : "";
    els.codeHint.textContent = "The 6 digits in the SMS" + (until ? ", valid until " + until : "") + ".";
    // "demo_code" comes only from a development server without an SMS gateway: show it as the SMS it stands for.
    var demo = typeof answer.demo_code === "string" ? answer.demo_code : null;
    els.demoSms.hidden = demo === null;
    els.demoSmsCode.textContent = demo || "";
    if (demo !== null) els.code.value = demo;
  }

  function endPending(message) {
    // The registration is over (expired, too many wrong codes, unknown): start again from the number.
    pending = null;
    showRegistration();
    setConnection("idle", "Not registered");
    els.registerError.textContent = message;
    els.phoneNumber.focus();
  }

  function verifyCode(event) {
    event.preventDefault();
    if (!pending) return;
    els.verifyError.textContent = "";
    els.verifyStatus.textContent = "";
    var code = els.code.value.replace(/\s+/g, "");
    if (!code) {
      els.verifyError.textContent = "Enter the code from the SMS.";
      els.code.focus();
      return;
    }
    var waiting = pending;
    els.verify.disabled = true;
    api("POST", "/app/v1/devices/verify", { registration_id: waiting.registration_id, code: code })
      .then(function (result) {
        if (pending !== waiting) return; // abandoned meanwhile
        if (result.status === 201 && result.body) {
          becomeRegistered(result.body, waiting);
        } else if (result.status === 404 || result.status === 410) {
          endPending(errorMessage(result.body, result.status));
        } else {
          els.verifyError.textContent = errorMessage(result.body, result.status);
          els.code.select();
        }
      })
      .catch(function () {
        els.verifyError.textContent = "Cannot reach the server. Check the connection and try again.";
      })
      .then(function () { els.verify.disabled = false; });
  }

  function resendCode() {
    if (!pending) return;
    els.verifyError.textContent = "";
    els.verifyStatus.textContent = "";
    var waiting = pending;
    els.resend.disabled = true;
    api("POST", "/app/v1/devices/resend", { registration_id: waiting.registration_id })
      .then(function (result) {
        if (pending !== waiting) return;
        if (result.status === 202 && result.body) {
          els.code.value = "";
          showCodeSent(result.body);
          els.verifyStatus.textContent = "A new code was sent.";
          els.code.focus();
        } else if (result.status === 404 || result.status === 410) {
          endPending(errorMessage(result.body, result.status));
        } else {
          els.verifyError.textContent = errorMessage(result.body, result.status);
        }
      })
      .catch(function () {
        els.verifyError.textContent = "Cannot reach the server. Check the connection and try again.";
      })
      .then(function () { els.resend.disabled = false; });
  }

  function restart() {
    pending = null;
    showRegistration();
    setConnection("idle", "Not registered");
    els.phoneNumber.focus();
  }

  function forget() {
    els.forgetError.textContent = "";
    els.forget.disabled = true;
    api("DELETE", "/app/v1/devices/me")
      .then(function (result) {
        // 401: the server already forgot this device (replaced or removed); forget it here too.
        if (result.status === 204 || result.status === 401) {
          dropRegistration("Not registered");
        } else {
          els.forgetError.textContent = errorMessage(result.body, result.status);
        }
      })
      .catch(function () {
        els.forgetError.textContent = "Cannot reach the server. Check the connection and try again.";
      })
      .then(function () { els.forget.disabled = false; });
  }

  function dropRegistration(statusText) {
    // Only clear what this page stored: another tab may already have saved a newer registration (which is
    // what replaced this one).
    var saved = loadRegistration();
    if (registration && saved && saved.device_token === registration.device_token) saveRegistration(null);
    registration = null;
    signalQueue = []; // signals belong to the device that saw the calls: never sent with another registration
    disconnect();
    setConnection(statusText === "Not registered" ? "idle" : "gone", statusText);
    showRegistration();
  }

  // --- push stream -------------------------------------------------------------------------------------

  function streamUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/app/v1/stream?token=" +
      encodeURIComponent(registration.device_token);
  }

  function clearTimers() {
    window.clearTimeout(reconnectTimer);
    window.clearInterval(countdownTimer);
    reconnectTimer = null;
    countdownTimer = null;
  }

  function disconnect() {
    clearTimers();
    if (socket) {
      var old = socket;
      socket = null; // its close handler sees it is no longer current and does nothing
      old.close(1000, "bye");
    }
  }

  function connect() {
    disconnect();
    if (!registration) return;
    setConnection("connecting", "Connecting\u2026");
    var ws = new WebSocket(streamUrl());
    var opened = false;
    socket = ws;
    ws.onopen = function () { opened = true; };
    ws.onmessage = function (event) {
      if (ws !== socket) return;
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return; // not ours to understand; keep the stream
      }
      onStreamMessage(message);
    };
    ws.onclose = function (event) {
      if (ws !== socket) return;
      socket = null;
      if (event.code === CLOSE_DEVICE_GONE) {
        dropRegistration("Registration replaced or removed: register again");
        return;
      }
      if (event.code === CLOSE_UNAUTHORIZED) {
        dropRegistration("Registration no longer valid: register again");
        return;
      }
      if (opened) {
        scheduleReconnect();
        return;
      }
      failures += 1;
      checkTokenThenReconnect(registration.device_token);
    };
  }

  function checkTokenThenReconnect(token) {
    // A browser never sees why a WebSocket handshake failed: a refused token (HTTP 401) and a server that is
    // down both look like close code 1006. One authenticated HTTP request tells them apart, so a dead
    // registration is dropped instead of being retried for ever. The lookup of a call from the phone's own
    // number is the lightest request the app API authenticates.
    api("GET", "/app/v1/caller-id?caller=" + encodeURIComponent(registration.phone_number))
      .then(function (result) { return result.status; }, function () { return null; })
      .then(function (status) {
        if (!registration || registration.device_token !== token || socket) return; // forgotten or replaced meanwhile
        if (status === 401) dropRegistration("Registration no longer valid: register again");
        else scheduleReconnect();
      });
  }

  function onStreamMessage(message) {
    if (message.type === "connected") {
      failures = 0;
      if (message.phone_number && registration) {
        registration.phone_number = message.phone_number; // the server's normalised form
        saveRegistration(registration);
        showRegistration();
      }
      setConnection("connected", "Connected");
    } else if (message.type === "call_personalisation") {
      showCall({
        source: "push",
        verified: true,
        caller: message.caller,
        name: message.label_name,
        logoUrl: message.logo_url,
        callReason: message.call_reason,
        startsAt: message.starts_at,
        endsAt: message.ends_at,
      });
    }
    // "heartbeat" and unknown types need nothing: receiving them is what keeps the stream known alive.
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, so that many phones do not all come back at the same moment.
    var base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, Math.max(0, failures - 1)));
    var delay = Math.round(base / 2 + Math.random() * (base / 2));
    var due = Date.now() + delay;
    var tick = function () {
      var seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setConnection("reconnecting", "Offline: reconnecting in " + seconds + " s");
    };
    clearTimers();
    tick();
    countdownTimer = window.setInterval(tick, 1000);
    reconnectTimer = window.setTimeout(connect, delay);
  }

  // --- incoming call -----------------------------------------------------------------------------------

  function showCall(call) {
    // A new call while another is on screen: a ringing one was not taken, an answered one ends.
    if (currentCall && currentCall.answeredAt) hangUp();
    else if (currentCall) missCall();
    currentCall = call;
    if (els.call.hidden) focusBeforeCall = document.activeElement;
    var number = displayNumber(call.caller);
    els.call.dataset.verified = call.verified ? "true" : "false";
    els.call.dataset.source = call.source;
    els.callName.textContent = call.verified ? call.name : "Unverified caller";
    els.callVerified.hidden = !call.verified;
    els.callReason.textContent = call.verified && call.callReason ? call.callReason : "";
    els.callReason.hidden = !els.callReason.textContent;
    els.callNumber.textContent = number;
    els.callWindow.textContent = call.startsAt && call.endsAt ? formatWindow(call.startsAt, call.endsAt) : "";
    els.callWindow.hidden = !els.callWindow.textContent;

    els.callLogoFallback.textContent = call.verified && call.name ? call.name.trim().charAt(0).toUpperCase() : "?";
    els.callLogo.hidden = true;
    els.callLogo.removeAttribute("src");
    if (call.verified && call.logoUrl) {
      els.callLogo.alt = call.name + " logo";
      els.callLogo.dataset.state = "loading";
      els.callLogo.src = call.logoUrl;
    } else {
      els.callLogo.alt = "";
      els.callLogo.dataset.state = "none";
    }

    els.announcer.textContent = call.verified
      ? "Incoming call from " + call.name + ", verified" + (call.callReason ? ": " + call.callReason : "") +
        ". " + number
      : "Incoming call from unverified caller " + number;
    showRinging(true);
    els.call.hidden = false;
    // A modal call screen: what is behind it can be neither reached by Tab nor read out.
    els.statusBar.inert = true;
    els.screen.inert = true;
    els.answer.focus();
    // Tell the business what happened to its call: only a verified identity was shown.
    if (call.verified) {
      call.id = newCallId();
      sendSignal(call, "displayed");
    }
    ringTimer = window.setTimeout(function () { missCall(); }, RING_TIMEOUT_MS);
  }

  function showRinging(ringing) {
    els.callKind.textContent = ringing ? "Incoming call" : "On call \u00b7 0:00";
    els.decline.hidden = !ringing;
    els.letRing.hidden = !ringing;
    els.answer.hidden = !ringing;
    els.hangUp.hidden = ringing;
  }

  function formatTalk(seconds) {
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function answerCall() {
    if (!currentCall || currentCall.answeredAt) return;
    window.clearTimeout(ringTimer);
    ringTimer = null;
    var call = currentCall;
    call.answeredAt = Date.now();
    sendSignal(call, "answered");
    showRinging(false);
    els.announcer.textContent = "On call with " + (call.verified ? call.name : "unverified caller " +
      displayNumber(call.caller));
    talkTimer = window.setInterval(function () {
      if (currentCall !== call) return;
      els.callKind.textContent = "On call \u00b7 " + formatTalk(Math.floor((Date.now() - call.answeredAt) / 1000));
    }, 1000);
    els.hangUp.focus();
  }

  function hangUp() {
    if (!currentCall || !currentCall.answeredAt) return;
    var seconds = Math.max(0, Math.round((Date.now() - currentCall.answeredAt) / 1000));
    sendSignal(currentCall, "ended", seconds);
    endCall("answered");
  }

  function declineCall() {
    if (!currentCall || currentCall.answeredAt) return;
    sendSignal(currentCall, "rejected");
    endCall("declined");
  }

  function missCall() {
    if (!currentCall || currentCall.answeredAt) return;
    sendSignal(currentCall, "missed");
    endCall("missed");
  }

  // --- call signals ------------------------------------------------------------------------------------

  function newCallId() {
    var random = new Uint32Array(2);
    window.crypto.getRandomValues(random);
    return Date.now().toString(36) + "-" + random[0].toString(36) + random[1].toString(36);
  }

  function sendSignal(call, kind, durationSeconds) {
    if (!call.verified || !call.id) return;
    var item = {
      eventId: call.id + "-" + kind,
      kind: kind,
      caller: String(call.caller).replace(/^\+/, ""),
      occurredAt: new Date().toISOString(),
    };
    if (kind === "ended") item.durationSeconds = durationSeconds;
    signalQueue.push(item);
    flushSignals();
  }

  function flushSignals() {
    if (signalsInFlight || signalQueue.length === 0 || !registration) return;
    window.clearTimeout(signalRetryTimer);
    signalRetryTimer = null;
    var batch = signalQueue.slice(0, SIGNALS_PER_REQUEST);
    signalsInFlight = true;
    api("POST", "/app/v1/call-signals", { signals: batch })
      .then(function (result) { return result.status; }, function () { return null; })
      .then(function (status) {
        signalsInFlight = false;
        // Taken (200), or refused for good (400: resending cannot help): off the queue. Event ids make a resend
        // after a lost answer harmless, so anything else (offline, 429, 5xx) is simply sent again later.
        if (status === 200 || status === 400) {
          signalQueue.splice(0, batch.length);
          flushSignals();
        } else if (status === 401) {
          signalQueue = []; // the registration is gone: its signals cannot be sent any more
        } else {
          signalRetryTimer = window.setTimeout(flushSignals, SIGNAL_RETRY_MS);
        }
      });
  }

  function onLogoLoaded() {
    if (!currentCall) return;
    els.callLogo.dataset.state = "loaded";
    els.callLogo.hidden = false;
  }

  function onLogoFailed() {
    // Keep the lettered placeholder: a missing logo must not hide who is calling.
    els.callLogo.dataset.state = "failed";
    els.callLogo.hidden = true;
  }

  function endCall(outcome) {
    if (!currentCall) return;
    window.clearTimeout(ringTimer);
    window.clearInterval(talkTimer);
    ringTimer = null;
    talkTimer = null;
    addRecentCall(currentCall, outcome);
    currentCall = null;
    showRinging(true);
    els.call.hidden = true;
    els.statusBar.inert = false;
    els.screen.inert = false;
    els.announcer.textContent = "";
    if (focusBeforeCall && typeof focusBeforeCall.focus === "function" && document.contains(focusBeforeCall)) {
      focusBeforeCall.focus();
    }
    focusBeforeCall = null;
  }

  function addRecentCall(call, outcome) {
    var item = document.createElement("li");
    var who = document.createElement("span");
    who.className = "recent-who";
    who.textContent = call.verified ? call.name + " \u2713" : "Unverified caller";
    var what = document.createElement("span");
    what.className = "recent-what muted";
    what.textContent = displayNumber(call.caller) + " \u00b7 " + outcome;
    item.appendChild(who);
    item.appendChild(what);
    els.recentCalls.insertBefore(item, els.recentCalls.firstChild);
    while (els.recentCalls.children.length > RECENT_CALLS_KEPT) {
      els.recentCalls.removeChild(els.recentCalls.lastChild);
    }
    els.noCalls.hidden = true;
  }

  function simulate(event) {
    event.preventDefault();
    els.simulateError.textContent = "";
    var caller = els.callerNumber.value.trim();
    if (!caller) {
      els.simulateError.textContent = "Enter the caller's number.";
      els.callerNumber.focus();
      return;
    }
    if (!registration) return;
    els.simulateCall.disabled = true;
    api("GET", "/app/v1/caller-id?caller=" + encodeURIComponent(caller))
      .then(function (result) {
        if (result.status === 401) {
          dropRegistration("Registration no longer valid: register again");
          return;
        }
        if (result.status !== 200 || !result.body) {
          els.simulateError.textContent = errorMessage(result.body, result.status);
          return;
        }
        var found = result.body;
        showCall({
          source: "lookup",
          verified: found.verified === true,
          caller: found.caller || caller,
          name: found.name,
          logoUrl: found.logo_url,
          callReason: found.call_reason,
          startsAt: found.starts_at,
          endsAt: found.ends_at,
        });
      })
      .catch(function () {
        els.simulateError.textContent = "Cannot reach the server. Check the connection and try again.";
      })
      .then(function () { els.simulateCall.disabled = registration === null; });
  }

  // --- wiring ------------------------------------------------------------------------------------------

  els.registerForm.addEventListener("submit", register);
  els.verifyForm.addEventListener("submit", verifyCode);
  els.resend.addEventListener("click", resendCode);
  els.restart.addEventListener("click", restart);
  els.forget.addEventListener("click", forget);
  els.simulateForm.addEventListener("submit", simulate);
  els.callLogo.addEventListener("load", onLogoLoaded);
  els.callLogo.addEventListener("error", onLogoFailed);
  els.answer.addEventListener("click", answerCall);
  els.decline.addEventListener("click", declineCall);
  els.letRing.addEventListener("click", missCall);
  els.hangUp.addEventListener("click", hangUp);
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !currentCall) return;
    if (currentCall.answeredAt) hangUp();
    else declineCall();
  });
  // Back online: try at once instead of waiting out the backoff.
  window.addEventListener("online", function () {
    if (registration && !socket) {
      failures = 0;
      connect();
    }
    flushSignals();
  });

  registration = loadRegistration(); // reuse the registration kept from an earlier visit
  showRegistration();
  if (registration) connect();
})();
