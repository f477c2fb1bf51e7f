"""`python -m tieout`: the same command line as the `tieout` script."""

from tieout.cli import main

if __name__ == "__main__":
    main()
