"""The web app's API, one router per concern: :mod:`.pages` (the page and what it lists),
:mod:`.images` (uploads), :mod:`.interactive` (layers, predict, explain, attack: answered while
the client waits) and :mod:`.jobs` (long jobs in the background)."""

from . import images, interactive, jobs, pages

__all__ = ["ROUTERS", "images", "interactive", "jobs", "pages"]

#: the routers in the order the app includes them (the order of ``/docs``).
ROUTERS = [pages.router, images.router, interactive.router, jobs.router]
