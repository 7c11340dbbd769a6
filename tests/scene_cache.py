"""Generated scenes shared by the test modules, cached once per (family, seed).

Generating a scene takes milliseconds and the suites ask for the same (family, seed)
hundreds of times. The cache holds the JSON, and every call returns a fresh
``Scene``, so a test that mutates its scene cannot leak into another test.
"""

import functools

from mmgeo_utils.diagrams.families import generate_scene
from mmgeo_utils.diagrams.scene import Scene


@functools.cache
def scene_json(family: str, seed: int) -> str:
    return generate_scene(family, seed).to_json()


def scene_of(family: str, seed: int) -> Scene:
    return Scene.from_json(scene_json(family, seed))
