import signal
import sys


_stopped: list[int] = []  # a library's bare `except:` inside torch's import can swallow the KeyboardInterrupt


def _stop(signum, _frame):
    _stopped.append(signum)
    raise KeyboardInterrupt(signum)


def _cancelled(signum: int):
    print(f"cancelled by {signal.Signals(signum).name} during start-up", file=sys.stderr)
    sys.exit(128 + signum)



# A stop signal while torch imports: one line. SIGINT always, as the trainer's own handler does once imported (a
# shell starts background jobs with SIGINT ignored; the app's cancel sends SIGINT); a SIGTERM or SIGHUP the caller
# ignores (nohup) stays ignored.
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    if _sig == signal.SIGINT or signal.getsignal(_sig) is not signal.SIG_IGN:
        signal.signal(_sig, _stop)
try:
    from train_backend.cli import main
except KeyboardInterrupt as exc:  # a stop signal while importing torch: one line, no traceback
    _cancelled(exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT)
if _stopped:  # the signal came while importing, but its exception was swallowed on the way out
    _cancelled(_stopped[0])

sys.exit(main())
