"""neurofabric studio: a local web app to train, watch, compare and try every engine.

``neurofabric studio`` serves it; :func:`neurofabric.studio.app.create_app` builds it over a
runs folder (FastAPI, the ``studio`` extra). The studio imports the engines; engines never
import the studio.
"""

__all__: list[str] = []
