"""Notice templates (Korean and English) and their rendering; sent by onboarding/mail/mailer.py."""

from __future__ import annotations

from string import Template

from onboarding.domain.models import Language

# template -> language -> (subject, body). `$name` placeholders are filled from the notice's
# context; a missing one is an error, not a silent blank.
TEMPLATES: dict[str, dict[Language, tuple[str, str]]] = {
    "application_received": {
        "ko": ("[Open API] 이용 신청이 접수되었습니다 ($application_id)",
               "$organisation 님의 이용 신청($service)이 접수되었습니다. 사전검증이 시작됩니다."),
        "en": ("[Open API] Application received ($application_id)",
               "The application of $organisation for $service has been received. "
               "Pre-verification starts now."),
    },
    "changes_requested": {
        "ko": ("[Open API] 신청 내용 보완 요청 ($application_id)",
               "$step 단계에서 보완이 요청되었습니다.\n사유: $note\n보완 후 다시 제출해 주십시오."),
        "en": ("[Open API] Changes requested ($application_id)",
               "Changes were requested at the $step step.\nReason: $note\n"
               "Please resubmit the amended details."),
    },
    "more_testing_requested": {
        "ko": ("[Open API] 샌드박스 추가 테스트 요청 ($application_id)",
               "업무적합성 검증에서 추가 테스트가 요청되었습니다.\n사유: $note"),
        "en": ("[Open API] More sandbox testing requested ($application_id)",
               "Business-suitability verification asks for more testing.\nReason: $note"),
    },
    "application_rejected": {
        "ko": ("[Open API] 신청이 반려되었습니다 ($application_id)",
               "$step 단계에서 신청이 반려되었습니다.\n사유: $note"),
        "en": ("[Open API] Application rejected ($application_id)",
               "The application was rejected at the $step step.\nReason: $note"),
    },
    "application_withdrawn": {
        "ko": ("[Open API] 신청이 철회되었습니다 ($application_id)",
               "신청이 철회되었습니다. 발급된 API 키는 모두 폐기되었습니다."),
        "en": ("[Open API] Application withdrawn ($application_id)",
               "The application was withdrawn. Every API key issued for it has been revoked."),
    },
    "application_lapsed": {
        "ko": ("[Open API] 신청이 만료되었습니다 ($application_id)",
               "$days일 동안 진행이 없어 신청이 만료되었습니다. 발급된 API 키는 폐기되었습니다."),
        "en": ("[Open API] Application lapsed ($application_id)",
               "The application lapsed after $days days without a response from the applicant. "
               "Any API key issued for it has been revoked."),
    },
    "reminder": {
        "ko": ("[Open API] 처리 대기 알림: $step ($application_id)",
               "$organisation 님의 신청이 $since 부터 $waiting_on 의 처리를 기다리고 있습니다."),
        "en": ("[Open API] Reminder: $step is waiting ($application_id)",
               "The application of $organisation has been waiting on $waiting_on since $since."),
    },
    "escalation": {
        "ko": ("[Open API] 처리 지연 보고: $step ($application_id)",
               "$organisation 님의 신청이 $since 부터 $waiting_on 의 처리를 기다리고 있어 "
               "상위 책임자에게 보고합니다."),
        "en": ("[Open API] Escalation: $step overdue ($application_id)",
               "The application of $organisation has been waiting on $waiting_on since $since "
               "and is escalated."),
    },
    "api_key_delivery": {
        "ko": ("[Open API] $environment API 키 발급 ($application_id)",
               "$environment 환경 API 키가 발급되었습니다. 이 키는 이번 한 번만 안내되며 "
               "플랫폼에는 저장되지 않습니다.\n\nAPI 키: $api_key\n허용 API: $scopes\n"
               "만료일: $expires_at"),
        "en": ("[Open API] Your $environment API key ($application_id)",
               "Your $environment API key has been issued. It is shown this once and the "
               "platform does not keep it.\n\nAPI key: $api_key\nAPIs: $scopes\n"
               "Expires: $expires_at"),
    },
    "member_notice_new_user": {
        "ko": ("[Open API 회원사 공지] 신규 이용기관 승인 ($organisation)",
               "$organisation 님이 이용기관으로 최종 승인되어 다음 API의 샌드박스 이용을 "
               "시작합니다: $apis"),
        "en": ("[Open API member notice] New user organisation approved ($organisation)",
               "$organisation has been approved as a user organisation and starts using these "
               "APIs in the sandbox: $apis"),
    },
    "member_notice_production": {
        "ko": ("[Open API 회원사 공지] 운영 서비스 개시 ($organisation)",
               "$organisation 님의 서비스($service)가 다음 API로 운영 환경에서 개시됩니다: $apis"),
        "en": ("[Open API member notice] Service launched in production ($organisation)",
               "$organisation launches $service in production using: $apis"),
    },
    "publication_received": {
        "ko": ("[Open API] API 등록 신청이 접수되었습니다 ($application_id)",
               "$organisation 님의 API($api) 등록 신청이 접수되었습니다. 사전협의가 시작됩니다."),
        "en": ("[Open API] API publication received ($application_id)",
               "The application of $organisation to publish $api has been received. "
               "The pre-review of integration method and specification starts now."),
    },
    "api_more_testing_requested": {
        "ko": ("[Open API] API 추가 테스트 요청 ($application_id)",
               "API 테스트 결과 검토에서 추가 테스트가 요청되었습니다.\n사유: $note"),
        "en": ("[Open API] More API testing requested ($application_id)",
               "The review of your API test results asks for more testing.\nReason: $note"),
    },
    "api_published": {
        "ko": ("[Open API] API가 $stage 환경에 게시되었습니다 ($application_id)",
               "$api API(명세 버전 $version)가 $stage 환경 카탈로그에 게시되었습니다."),
        "en": ("[Open API] Your API is published in $stage ($application_id)",
               "$api (specification version $version) is now in the $stage catalogue."),
    },
    "member_notice_api_published": {
        "ko": ("[Open API 회원사 공지] 신규 API 게시: $api ($stage)",
               "$organisation 님의 $api API(명세 버전 $version)가 $stage 환경에 게시되었습니다."),
        "en": ("[Open API member notice] New API in $stage: $api",
               "$api by $organisation (specification version $version) is now in the $stage "
               "catalogue."),
    },
    "publication_withdrawn": {
        "ko": ("[Open API] API 등록이 철회되었습니다 ($application_id)",
               "$api API 등록 신청이 철회되었습니다. 카탈로그에서 제외되었습니다."),
        "en": ("[Open API] API publication withdrawn ($application_id)",
               "The publication of $api was withdrawn; it has left the catalogue."),
    },
    "publication_lapsed": {
        "ko": ("[Open API] API 등록 신청이 만료되었습니다 ($application_id)",
               "$days일 동안 진행이 없어 $api API 등록 신청이 만료되었습니다."),
        "en": ("[Open API] API publication lapsed ($application_id)",
               "The publication of $api lapsed after $days days without a response from the "
               "provider."),
    },
    "application_refused": {
        "ko": ("[Open API] 신청이 접수되지 않았습니다 ($application_id)",
               "신청 요건을 충족하지 않아 신청이 접수되지 않았습니다. 아래 사항을 바로잡아 "
               "다시 제출해 주십시오.\n$refusals"),
        "en": ("[Open API] Application refused ($application_id)",
               "The application does not meet the platform's rules and was not admitted. "
               "Correct the following and submit it again:\n$refusals"),
    },
    "keys_revoked_process_closed": {
        "ko": ("[Open API] API 키가 폐기되었습니다 ($application_id)",
               "신청의 처리 절차가 운영 전환 없이 종료되어($closed) 다음 API 키를 "
               "폐기했습니다: $keys"),
        "en": ("[Open API] API keys revoked ($application_id)",
               "The application's process ended without reaching production ($closed), so "
               "these API keys were revoked: $keys"),
    },
    "application_in_production": {
        "ko": ("[Open API] 운영 전환 완료 ($application_id)",
               "서비스 계약이 등록되고 운영 API 키가 발급되었습니다. 서비스 개시를 축하드립니다."),
        "en": ("[Open API] Your service is in production ($application_id)",
               "The service contract is recorded and the production API key issued."),
    },
    # --- the live service (workflows/live_service.py) ---
    "live_service_started": {
        "ko": ("[Open API] 운영 서비스 관리 시작 ($application_id)",
               "운영 중인 서비스의 API 키, 라이선스와 계약을 플랫폼이 관리합니다. 키 만료 전에 "
               "안내하고 갱신합니다."),
        "en": ("[Open API] Your live service is looked after ($application_id)",
               "The platform now looks after your live service's API keys, licence and "
               "contracts: you will hear before a key expires, and keys are renewed."),
    },
    "key_expiry_reminder": {
        "ko": ("[Open API] $environment API 키 만료 $days일 전 ($application_id)",
               "API 키 $display_prefix…가 $expires_on에 만료됩니다. 지금 갱신을 요청하거나, "
               "$renews_on에 자동으로 새 키가 발급됩니다."),
        "en": ("[Open API] Your $environment API key expires in $days days ($application_id)",
               "API key $display_prefix… expires on $expires_on. Ask for a new one now "
               "(renew_key), or a new key is issued automatically on $renews_on."),
    },
    "key_renewed": {
        "ko": ("[Open API] $environment API 키 갱신 ($application_id)",
               "새 API 키가 별도 메일로 발급되었습니다. 이전 키 $display_prefix…는 "
               "$old_key_until까지 사용할 수 있습니다."),
        "en": ("[Open API] Your $environment API key is renewed ($application_id)",
               "A new API key is delivered in a separate mail. The old key $display_prefix… "
               "keeps working until $old_key_until."),
    },
    "contract_expiry_reminder": {
        "ko": ("[Open API] $contract 만료 $days일 전 ($application_id)",
               "$organisation 님의 $contract($contract_number)가 $valid_until에 만료됩니다. "
               "만료되면 갱신될 때까지 API 키의 $suspends 사용이 정지됩니다."),
        "en": ("[Open API] $contract expires in $days days ($application_id)",
               "The $contract ($contract_number) of $organisation expires on $valid_until. "
               "Once it lapses, the keys' $suspends are suspended until it is renewed."),
    },
    "contract_lapsed": {
        "ko": ("[Open API] $contract 만료: API 키 정지 ($application_id)",
               "$contract($contract_number)가 만료되어 API 키의 $suspends 사용이 정지되었습니다. "
               "갱신이 기록되면 복구됩니다."),
        "en": ("[Open API] $contract lapsed: keys suspended ($application_id)",
               "The $contract ($contract_number) lapsed: the keys' $suspends are suspended "
               "until a renewal is recorded."),
    },
    "contract_renewed": {
        "ko": ("[Open API] $contract 갱신 ($application_id)",
               "$contract가 $valid_until까지 갱신되었습니다."),
        "en": ("[Open API] $contract renewed ($application_id)",
               "The $contract is renewed until $valid_until; any suspension it caused is "
               "lifted."),
    },
    "service_suspended": {
        "ko": ("[Open API] API 키 사용 정지 ($application_id)",
               "서비스의 모든 API 키 사용이 정지되었습니다.\n사유: $note"),
        "en": ("[Open API] Your API keys are suspended ($application_id)",
               "Every API key of your service is suspended.\nReason: $note"),
    },
    "service_reinstated": {
        "ko": ("[Open API] API 키 사용 재개 ($application_id)",
               "API 키 사용 정지가 해제되었습니다."),
        "en": ("[Open API] Your API keys work again ($application_id)",
               "The suspension of your API keys is lifted."),
    },
    "live_service_change": {
        "ko": ("[Open API] 서비스 변경: $what ($application_id)",
               "$organisation 님의 서비스 변경: $what\n$note"),
        "en": ("[Open API] Service change: $what ($application_id)",
               "A change of the live service of $organisation: $what\n$note"),
    },
    "termination_scheduled": {
        "ko": ("[Open API] 서비스 해지 예정 ($application_id)",
               "서비스가 $effective_on에 해지되며 모든 API 키가 폐기됩니다.\n$note"),
        "en": ("[Open API] Your service ends on $effective_on ($application_id)",
               "The live service ends on $effective_on: every API key is revoked then.\n$note"),
    },
    "service_terminated": {
        "ko": ("[Open API] 서비스 해지 ($application_id)",
               "서비스가 해지되어 모든 API 키가 폐기되었습니다.\n$note"),
        "en": ("[Open API] Your service has ended ($application_id)",
               "The live service has ended; every API key is revoked.\n$note"),
    },
    "api_retirement": {
        "ko": ("[Open API] API 종료 안내: $api_id ($application_id)",
               "$api_id API가 $retired_on에 종료되어 API 키의 허용 범위에서 제외됩니다."),
        "en": ("[Open API] API retired: $api_id ($application_id)",
               "The $api_id API is retired on $retired_on: from then on your keys no longer "
               "grant it."),
    },
}


def render(template: str, language: Language, context: dict[str, str]) -> tuple[str, str]:
    subject, body = TEMPLATES[template][language]
    return Template(subject).substitute(context), Template(body).substitute(context)
