#!/usr/bin/env node
// Node-Media-Server as a relay for prism-load (see ../README.md, relay `nms`).
//
//   node launch.js --rtmp-port P --dir D [--sink-port S --targets N --scenario fanout|multi]
//
// RTMP only (no HTTP/admin, no auth, no recording), logs at "warn". For push scenarios every
// publish of /live/<name> gets N push relay tasks (NMS 4's in-process RTMP client, one TCP
// connection per destination, no ffmpeg): fanout pushes to rtmp://127.0.0.1:S/sink/t<i>,
// multi to rtmp://127.0.0.1:S/sink/<name>_t<i>, as the Prism and nginx-rtmp configs do.
"use strict";
const path = require("path");
const { parseArgs } = require("util");
const NodeMediaServer = require("node-media-server");
const logger = require("node-media-server/src/core/logger.js");

const { values: a } = parseArgs({
  options: {
    "rtmp-port": { type: "string" },
    dir: { type: "string" },
    "sink-port": { type: "string" },
    targets: { type: "string", default: "0" },
    scenario: { type: "string", default: "players" }
  },
  strict: true
});
const dir = path.resolve(a.dir ?? ".");
const config = {
  bind: "127.0.0.1",
  rtmp: { port: Number(a["rtmp-port"]) },
  // The relay tasks are persisted here; a fresh dir per run keeps a run from restoring the
  // previous run's tasks.
  store: { path: path.join(dir, "nms-data") },
  auth: { play: false, publish: false, secret: "unused" },
  webadmin: { enable: false },
  record: { auto: false, path: path.join(dir, "nms-record") }
};
const nms = new NodeMediaServer(config, path.join(dir, "nms.json"));
// The constructor sets "debug": one line per connection and more.
logger.level = "warn";

const targets = Number(a.targets);
if (targets > 0) {
  nms.on("postPublish", (session) => {
    const streamPath = session.streamPath;
    const name = streamPath.split("/")[2];
    // postPublish fires before the broadcast records its publisher; a push task needs it.
    setImmediate(() => {
      for (let i = 0; i < targets; i++) {
        const key = a.scenario === "multi" ? `${name}_t${i}` : `t${i}`;
        nms.relayServer.addTask({
          url: `rtmp://127.0.0.1:${a["sink-port"]}/sink/${key}`,
          streamPath,
          mode: "push",
          reconnect: false
        });
      }
    });
  });
}
nms.run();
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => nms.stop().finally(() => process.exit(0)));
}
