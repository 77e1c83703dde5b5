"""manage.py create_api_key --org SLUG --name NAME --site SLUG [--site SLUG] [--write]

Prints the key's plaintext once on stdout (and nothing else there, so scripts can capture it);
only its hash is stored.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clinics.models import Organization, Site
from clinics.services import api_key_create


class Command(BaseCommand):
    help = gettext_lazy("Create an API key for some of an organisation's sites and print its secret once.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help=_("Organisation slug."))
        parser.add_argument("--name", required=True, help=_("What the key is for, e.g. 'EHR bridge'."))
        parser.add_argument("--site", action="append", required=True, dest="sites", metavar="SLUG",
                            help=_("Site slug the key may see; repeat for several sites."))
        parser.add_argument("--write", action="store_true", help=_("Allow writes (default: read-only)."))

    def handle(self, *args, org, name, sites, write, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            known = ", ".join(Organization.objects.order_by("slug").values_list("slug", flat=True)) or "-"
            raise CommandError(_("Unknown organisation %(org)r. Known: %(known)s.") % {"org": org, "known": known})
        name = name.strip()
        if not name:
            raise CommandError(_("--name must not be blank."))
        if len(name) > 200:
            raise CommandError(_("--name must be at most 200 characters."))
        by_slug = {s.slug: s for s in Site.objects.filter(organization=organization)}
        unknown = [slug for slug in sites if slug not in by_slug]
        if unknown:
            raise CommandError(
                _("Unknown site(s) %(sites)s in organisation %(org)s. Known: %(known)s.")
                % {"sites": ", ".join(unknown), "org": org, "known": ", ".join(sorted(by_slug)) or "-"}
            )
        chosen = [by_slug[slug] for slug in dict.fromkeys(sites)]
        key, plaintext = api_key_create(organization=organization, name=name, sites=chosen, can_write=write)
        self.stderr.write(
            _("Created API key %(name)r (prefix %(prefix)s, %(rights)s) for sites: %(sites)s.")
            % {"name": key.name, "prefix": key.prefix, "rights": _("read-write") if write else _("read-only"),
               "sites": ", ".join(s.slug for s in chosen)}
        )
        self.stderr.write(_("Store it now: it cannot be shown again. Send it as 'Authorization: Api-Key <key>'."))
        self.stdout.write(plaintext)
