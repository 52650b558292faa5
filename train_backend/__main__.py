import sys

try:
    from train_backend.cli import main
except KeyboardInterrupt:  # SIGINT while importing torch: one line, no traceback
    print("cancelled", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
