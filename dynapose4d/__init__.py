"""DynaPose4D: one image (or a video) to an animated 3D Gaussian Splatting model.

Nothing heavy is imported here so that `import dynapose4d` stays cheap; import the
submodules you need (`dynapose4d.render`, `dynapose4d.gaussians`, ...).
"""

__version__ = "0.1.0"
