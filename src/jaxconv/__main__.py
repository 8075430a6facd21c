"""``python -m jaxconv``: the same as ``jaxconv-train``."""

from jaxconv.app.train import main

if __name__ == "__main__":
    main()
