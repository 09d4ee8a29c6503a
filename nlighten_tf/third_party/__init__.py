"""Code nlighten_tf ships but did not write, each package with its upstream LICENSE and a README
stating where it comes from, which version it is and why it is vendored rather than installed."""
