"""A lesion mask's outline as closed polygons: what the web page draws over the image and the API
returns beside the mask.

The outline follows the pixel edges between lesion and background (the "crack" boundary), so it
encloses exactly the mask's pixels: each polygon's vertices are pixel corners in the image's
coordinates (x to the right, y down; pixel (row r, column c) is the unit square from (c, r) to
(c + 1, r + 1)), and only the corners where the outline turns are kept. Walking a polygon keeps the
lesion on the right: an outer boundary runs clockwise on the screen, a hole's boundary
anticlockwise, so the signed areas of all the polygons add up to the mask's pixel count.

Lesion pixels that touch only at a corner are on one outline (8-connectivity, as the components of
:mod:`lesionlens.evaluation.mask_ops`). Torch-free (numpy), for the server.
"""

from __future__ import annotations

import numpy as np

# Directions of an edge, in clockwise order on the screen: +x, +y, -x, -y. Turning right is +1.
_STEPS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def outline_polygons(mask) -> list[np.ndarray]:
    """The closed outlines of an H x W bool mask: a list of K x 2 int arrays of (x, y) pixel
    corners (the first vertex is not repeated at the end), in the raster order of their first edge;
    empty for an empty mask."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"an outline is traced on one H x W mask, got shape {m.shape}")
    edges = _directed_edges(m)
    if not edges:
        return []
    polygons = []
    while edges:
        start = next(iter(edges))
        polygons.append(_walk(edges, start))
    return polygons


def polygon_area(polygon: np.ndarray) -> float:
    """The signed (shoelace) area of a polygon of (x, y) vertices: positive when it runs clockwise on
    the screen (y down), as an outer outline does."""
    x, y = np.asarray(polygon, dtype=np.float64).T
    return float((np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _directed_edges(m: np.ndarray) -> dict[tuple[int, int], list[int]]:
    """Start corner -> the directions of the lesion-on-the-right edges leaving it (one, or two where
    two lesion pixels touch at a corner), in raster order of the corners."""
    p = np.pad(m, 1)
    inner = p[1:-1, 1:-1]
    found = []
    # (pixels with background on that side, the edge's start corner relative to the pixel, direction)
    for outside, (dx, dy), direction in ((~p[:-2, 1:-1], (0, 0), 0), (~p[1:-1, 2:], (1, 0), 1),
                                         (~p[2:, 1:-1], (1, 1), 2), (~p[1:-1, :-2], (0, 1), 3)):
        rows, cols = np.nonzero(inner & outside)
        found.append(np.stack([rows + dy, cols + dx, np.full(len(rows), direction)], axis=1))
    table = np.concatenate(found)
    table = table[np.lexsort((table[:, 2], table[:, 1], table[:, 0]))]
    edges: dict[tuple[int, int], list[int]] = {}
    for y, x, direction in table.tolist():
        edges.setdefault((x, y), []).append(direction)
    return edges


def _walk(edges: dict[tuple[int, int], list[int]], start: tuple[int, int]) -> np.ndarray:
    """Follow edges from ``start`` until back there, removing them; returns the corners where the
    outline turns. The start has one edge left (it is the first corner in raster order of what is
    left, so no unused edge arrives from above it), so the walk can only end there."""
    corner, first, previous = start, None, None
    vertices = []
    while True:
        leaving = edges[corner]
        if len(leaving) == 2:  # two lesion pixels touch at this corner: turn left, onto the other one
            direction = (previous - 1) % 4
        else:
            direction = leaving[0]
        leaving.remove(direction)
        if not leaving:
            del edges[corner]
        if direction != previous:
            vertices.append(corner)
        first = direction if first is None else first
        previous = direction
        dx, dy = _STEPS[direction]
        corner = (corner[0] + dx, corner[1] + dy)
        if corner == start:
            break
    if previous == first:  # no turn at the start: it lies inside the outline's first side
        vertices = vertices[1:]
    return np.asarray(vertices, dtype=np.int64)
