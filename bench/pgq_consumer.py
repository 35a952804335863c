"""The Python side of bench/pgq.sh: a pgq.Consumer (PyPI pgq 3.8, skytools 3.10) that
decodes each logutriga event with skytools.db_urldecode, as the Rust side decodes it, and
exits once COUNT events were seen.  Usage: python pgq_consumer.py CONFIG.ini COUNT"""

import sys
import time

import pgq
import skytools


class BenchConsumer(pgq.Consumer):
    def __init__(self, args):
        self.want = int(args[-1])
        super().__init__("bench_consumer", "db", args[:-1])
        self.seen = 0
        self.columns = 0
        self.batches = 0
        self.started = None

    def process_batch(self, db, batch_id, ev_list):
        if self.started is None:
            self.started = time.time()
        for ev in ev_list:
            if ev.type and ev.type[:2] in ("I:", "U:", "D:"):
                self.columns += len(skytools.db_urldecode(ev.data))
            self.seen += 1
            ev.tag_done()
        self.batches += 1

    def work(self):
        res = super().work()
        if self.seen >= self.want:
            secs = time.time() - self.started
            print("python: %d events (%d columns decoded) in %d batches, %.2f s, %.0f events/s"
                  % (self.seen, self.columns, self.batches, secs, self.seen / secs), flush=True)
            sys.exit(0)
        return res


if __name__ == "__main__":
    BenchConsumer(sys.argv[1:]).start()
