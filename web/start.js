// The page only starts the app (Rust, compiled to wasm) and says plainly what is wrong if it
// cannot: everything else is drawn into the canvas.
const status = document.getElementById("status");
const message = document.getElementById("message");
const say = (text) => { message.textContent = text; status.hidden = false; };
if (!document.createElement("canvas").getContext("webgl2")) {
  say("Duet draws the room with WebGL2, which this browser does not offer (or has turned off). Try a current Chrome, Firefox, Edge or Safari.");
} else {
  import("/pkg/duet-client.js")
    .then(async (module) => {
      // The app hides the status box itself once its first frame is drawn.
      try {
        await module.default();
      } catch (error) {
        // winit ends Bevy's start-up by throwing "Using exceptions for control flow": not a failure.
        if (!String(error).includes("control flow")) throw error;
      }
      // Once the app runs (not before: the first visit's download comes first), keep it for the
      // next visit (see sw.js). Where service workers are missing or refused, every visit
      // downloads the app, as before.
      navigator.serviceWorker?.register("/sw.js").catch((error) => {
        console.warn(`Duet will download the app again next time: ${error.message || error}`);
      });
    })
    .catch((error) => {
      console.error(error);
      say(`Duet could not start: ${error.message || error}. Reloading the page may help.`);
    });
}
