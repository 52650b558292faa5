import signal
import sys


def _stop(signum, _frame):
    raise KeyboardInterrupt(signum)


# A scheduler's SIGTERM or a closed terminal's SIGHUP while torch imports: one line, as for SIGINT (the trainer
# installs its own handlers once imported; an ignored signal, as under nohup, stays ignored).
for _sig in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_sig) is not signal.SIG_IGN:
        signal.signal(_sig, _stop)
try:
    from train_backend.cli import main
except KeyboardInterrupt as exc:  # a stop signal while importing torch: one line, no traceback
    signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
    print(f"cancelled by {signal.Signals(signum).name} during start-up", file=sys.stderr)
    sys.exit(128 + signum)

sys.exit(main())
