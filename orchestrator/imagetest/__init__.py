"""``image_test()`` targets: checks on built images in the manner of container-structure-test."""
