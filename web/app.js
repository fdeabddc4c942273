// Duet's landing page: create a room, show its link, and report who is in it. The Bevy client
// replaces this page later; until then it is the plain way to mint and share a room.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
}

async function apiError(response) {
  try {
    const body = await response.json();
    return body.message || body.error || `HTTP ${response.status}`;
  } catch {
    return `The server answered HTTP ${response.status}.`;
  }
}

async function createRoom() {
  const button = $("create");
  button.disabled = true;
  try {
    const response = await fetch("/api/rooms", { method: "POST" });
    if (response.status !== 201) throw new Error(await apiError(response));
    const { room, owner_key } = await response.json();
    localStorage.setItem(`duet.owner.${room}`, owner_key);
    location.assign(`/r/${room}`);
  } catch (e) {
    showError(`Could not create a room: ${e.message}`);
    button.disabled = false;
  }
}

async function refreshStatus(room) {
  const status = $("status");
  try {
    const response = await fetch(`/api/rooms/${encodeURIComponent(room)}`, { cache: "no-store" });
    if (response.status === 404) {
      status.textContent = "This room does not exist or has expired. Create a new one.";
      $("lobby").hidden = false;
      return false;
    }
    if (!response.ok) throw new Error(await apiError(response));
    const { peers, capacity } = await response.json();
    status.textContent =
      peers === 0 ? "Nobody is in the room yet — share the link."
      : peers < capacity ? "One person is in the room, waiting for the other."
      : "The room is full: both people are here.";
    return true;
  } catch (e) {
    status.textContent = `Cannot reach the server: ${e.message}`;
    return true;
  }
}

async function showRoom(room) {
  $("room").hidden = false;
  $("link").value = location.href;
  $("owner-note").hidden = !localStorage.getItem(`duet.owner.${room}`);
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("link").value);
      $("copy").textContent = "Copied";
    } catch {
      $("link").select();
      $("copy").textContent = "Press Ctrl+C";
    }
  });
  if (await refreshStatus(room)) setInterval(() => refreshStatus(room), 3000);
}

$("create").addEventListener("click", createRoom);
const match = location.pathname.match(/^\/r\/([A-Za-z0-9_-]{22})$/);
if (match) showRoom(match[1]); else $("lobby").hidden = false;
