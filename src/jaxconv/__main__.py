"""``python -m jaxconv``: the same as ``jaxconv-train``."""

from jaxconv.app.task import main

if __name__ == "__main__":
    main()
