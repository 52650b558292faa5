import signal
import sys


def _stop(signum, _frame):
    raise KeyboardInterrupt(signum)


# A stop signal while torch imports: one line. SIGINT always, as the trainer's own handler does once imported (a
# shell starts background jobs with SIGINT ignored; the app's cancel sends SIGINT); a SIGTERM or SIGHUP the caller
# ignores (nohup) stays ignored.
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    if _sig == signal.SIGINT or signal.getsignal(_sig) is not signal.SIG_IGN:
        signal.signal(_sig, _stop)
try:
    from train_backend.cli import main
except KeyboardInterrupt as exc:  # a stop signal while importing torch: one line, no traceback
    signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
    print(f"cancelled by {signal.Signals(signum).name} during start-up", file=sys.stderr)
    sys.exit(128 + signum)

sys.exit(main())
