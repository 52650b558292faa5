import signal
import sys

from train_backend.interrupts import inside_import

_received = []


def _stop(signum, frame):
    _received.append(signum)
    if not inside_import(frame):  # the import below defers it (see inside_import); the CLI's code after it does not
        raise KeyboardInterrupt(signum)


# A stop signal while torch imports: one line. SIGINT always, as the trainer's own handler does once imported (a
# shell starts background jobs with SIGINT ignored; the app's cancel sends SIGINT); a SIGTERM or SIGHUP the caller
# ignores (nohup) stays ignored.
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    if _sig == signal.SIGINT or signal.getsignal(_sig) is not signal.SIG_IGN:
        signal.signal(_sig, _stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {_sig})  # a mask inherited from the launcher would hold it forever
from train_backend.cli import main  # noqa: E402 (after the handlers: torch's import takes seconds)

if _received:  # a stop signal while importing: one line, no traceback
    print(f"cancelled by {signal.Signals(_received[0]).name} during start-up", file=sys.stderr)
    sys.exit(128 + _received[0])

sys.exit(main())
