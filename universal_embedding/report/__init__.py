"""Files for people: results files and page, the neighbour gallery and its images.

Writing only: what is written here was computed by knn/ (which never imports this package).
"""
