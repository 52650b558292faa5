import sys

from train_backend.cli import main

sys.exit(main())
