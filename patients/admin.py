"""Patients are not in the Django admin.

The console and the API are where patient records are read and changed: they scope every record
to the reader's sites, write the access log and record each change. An admin page would do none of
that, so a superuser's browsing would leave no trace.
"""
