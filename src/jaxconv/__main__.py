"""``python -m jaxconv``: a short tour of the primitives and their backends."""

from jaxconv.demo import main

if __name__ == "__main__":
    main()
