// A diagnostic for `cargo xtask bench wan --connections N`, added to the plain-JS reference
// page (reference.html) of both sides: N - 1 more peer connections, each negotiated over the
// first one's data channel (offer and answer as JSON text, whole SDP once ICE gathering is
// done), then bytes from memory striped over all N channels, 64 KiB per message, each channel
// kept at most 1 MiB buffered. It shows how far Chromium's SCTP goes with one connection and
// with several over the same emulated link: each connection has its own congestion window.
// Not part of the product.
(() => {
  const gathered = window.iceGathered;
  window.extra = [];
  window.receivedBytes = 0;
  const count = (m) => { if (typeof m.data !== "string") window.receivedBytes += m.data.byteLength; };
  const answers = {};
  window.listenMore = (iceServers) => {
    channel.onmessage = async (m) => {
      if (typeof m.data !== "string") { count(m); return; }
      const x = JSON.parse(m.data);
      if (x.answer) { answers[x.more](x.answer); return; }
      if (!x.offer) return;
      const pc = new RTCPeerConnection({ iceServers });
      const ch = pc.createDataChannel("bulk", { negotiated: true, id: 0, ordered: true });
      ch.binaryType = "arraybuffer";
      ch.onmessage = count;
      await pc.setRemoteDescription({ type: "offer", sdp: x.offer });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      channel.send(JSON.stringify({ more: x.more, answer: pc.localDescription.sdp }));
      window.extra.push(ch);
    };
  };
  window.openMore = async (n, iceServers) => {
    for (let i = 1; i <= n; i++) {
      const pc = new RTCPeerConnection({ iceServers });
      const ch = pc.createDataChannel("bulk", { negotiated: true, id: 0, ordered: true });
      ch.binaryType = "arraybuffer";
      const opened = new Promise((r) => (ch.onopen = r));
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const answer = new Promise((r) => (answers[i] = r));
      channel.send(JSON.stringify({ more: i, offer: pc.localDescription.sdp }));
      await pc.setRemoteDescription({ type: "answer", sdp: await answer });
      await opened;
      window.extra.push(ch);
    }
  };
  window.sendStriped = async (size, message = 64 * 1024, high = 1024 * 1024) => {
    const all = [channel, ...window.extra];
    const buf = new Uint8Array(message);
    for (const ch of all) ch.bufferedAmountLowThreshold = high / 2;
    let sent = 0;
    while (sent < size) {
      const free = all.filter((ch) => ch.bufferedAmount <= high);
      if (free.length === 0) {
        await Promise.race(all.map((ch) => new Promise((r) => ch.addEventListener("bufferedamountlow", r, { once: true }))));
        continue;
      }
      for (const ch of free) {
        if (sent >= size) break;
        ch.send(buf);
        sent += message;
      }
    }
  };
  window.receiveStriped = (size) => new Promise((resolve) => {
    const check = setInterval(() => { if (window.receivedBytes >= size) { clearInterval(check); resolve(window.receivedBytes); } }, 20);
  });
})();
