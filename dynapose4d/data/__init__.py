"""Input data: image and video loading, the synthetic articulated subject, benchmark readers."""
