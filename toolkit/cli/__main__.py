"""``python -m segkit.cli``: the same as the ``segkit`` console script."""

from segkit.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
