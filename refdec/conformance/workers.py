"""Non-normative: `refdec check -j N`: N worker processes, each checking one vector at a time.

Threads in one process gave no speed-up when refdec checks itself (the GIL), and N processes each
with NumPy's default BLAS thread pool oversubscribe the cores (clause-free, but measured: 11x
slower on a busy two-core machine). So each worker is a fresh Python (`python -m
refdec.conformance.worker`), started with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS
and friends set to 1 in its environment, before NumPy loads. A worker runs in a session of its own
(the terminal's Ctrl-C reaches only the checker, which ends the workers and their decoders); it
reads its set-up and then one vector id per line on stdin and writes one JSON result per line.

A worker that dies (a crash inside refdec, the kernel's OOM killer) costs its vector, reported as
`error`, and is replaced.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def worker_env() -> dict:
    env = dict(os.environ)
    env.update({k: "1" for k in THREAD_VARS})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


class _Worker:
    def __init__(self, init_line: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "refdec.conformance.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=worker_env(), text=True, bufsize=1,
                                     start_new_session=(os.name == "posix"))
        self.proc.stdin.write(init_line)
        self.proc.stdin.flush()

    def ask(self, vid: str) -> str:
        try:
            self.proc.stdin.write(json.dumps({"vector": vid}) + "\n")
            self.proc.stdin.flush()
            return self.proc.stdout.readline()
        except (OSError, ValueError):
            return ""

    def close(self, kill: bool) -> None:
        p = self.proc
        if kill and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)   # the worker ends its decoder's group, then exits
            except OSError:
                pass
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(timeout=5)
        try:
            p.stdout.close()
        except OSError:
            pass


def run_in_workers(manifest, opts, inputs, vectors, on_result) -> None:
    """Check `vectors` in opts.jobs worker processes, calling on_result(Result) in this thread as
    each finishes (it returns False to stop handing out vectors). KeyboardInterrupt ends every worker."""
    from .reports import Result

    init = json.dumps({"manifest": str(manifest.path.resolve()), "options": opts.to_json(),
                       "inputs": inputs.to_json() if inputs is not None else None}) + "\n"
    todo: queue.Queue = queue.Queue()
    for v in vectors:
        todo.put(v)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()
    workers: list = []
    lock = threading.Lock()

    def serve():
        w = None
        try:
            while not stop.is_set():
                try:
                    vec = todo.get_nowait()
                except queue.Empty:
                    break
                if w is None:
                    with lock:
                        if stop.is_set():
                            todo.put(vec)
                            break
                        w = _Worker(init)
                        workers.append(w)
                line = w.ask(vec["id"])
                if stop.is_set() and not line:
                    break
                if not line:
                    rc = w.proc.poll()
                    done.put(("dead", vec, rc))
                    w.close(kill=True)
                    w = None
                    continue
                done.put(("ok", vec, line))
        finally:
            done.put(("exit", None, None))

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(min(opts.jobs, len(vectors)))]
    for t in threads:
        t.start()
    running = len(threads)
    interrupted = False
    try:
        while running:
            try:
                kind, vec, payload = done.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "exit":
                running -= 1
                continue
            if kind == "dead":
                res = Result(vec["id"], vec["kind"], "error",
                             f"the checker's worker process died (exit status {payload}) while checking this vector",
                             purpose=vec["purpose"], look_at=list(vec["look_at"]),
                             details={"expected_error": vec.get("expected_error"), "notes": []})
            else:
                res = Result.from_dict(json.loads(payload)["result"])
            if not on_result(res):
                stop.set()
    except BaseException:
        interrupted = True
        stop.set()
        raise
    finally:
        stop.set()
        with lock:
            for w in workers:
                w.close(kill=interrupted)
        for t in threads:
            t.join(timeout=5)
